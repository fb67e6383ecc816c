"""`swallow-trt convert`: Hugging Face Llama safetensors -> TensorRT-LLM checkpoint, in bounded memory.

Spec: `shared/reference/trtllm-checkpoint.md` §1-3. TensorRT-LLM's own converter loads the whole model and
is killed for lack of host RAM on 70B. Here every rank file is a stream: its layout (names, dtypes,
shapes) is computed from `weight_map.rank_plan` before any data is read, the safetensors header is
written from it, and then tensors are produced one group at a time (read only this rank's slice,
transform, write, release), so peak memory is one tensor group whatever the number of layers.

This module is the orchestration: checks, the rank jobs and their threads, config.json, the manifest
and the click command. The pieces live beside it: `source_checkpoint` (reading and hashing the
source), `rank_writer` (streaming rank files), `convert_quant` (what `--quant` writes for a linear
weight) and `convert_calibration` (calibrating or reusing a calibration).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from tqdm import tqdm

from trt_build import __version__
from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir, interruption_explained, refuse_existing
from trt_build.common.targets import TARGET_CHOICES, resolve_target
from trt_build.convert.calibration import QuantOptions, run_calibration, save_calibration
from trt_build.convert.rank_writer import Cancelled, RankFileWriter, prefetched, release_freed_memory_eagerly
from trt_build.convert.trtllm_linears import KV_CACHE_SCALE, LINEAR_WRITERS, LinearWeight, LinearWriter
from trt_build.formats.safetensors_stream import TensorSpec, tensor_bytes
from trt_build.parallel.rules import check_awq_group, check_parallelism
from trt_build.parallel.weight_map import RankTensor, SourceSlice, Split, rank_plan
from trt_build.quant import linear as ql
from trt_build.quant.calibrate import CalibrationResult, calibration_options
from trt_build.quant.schemes import KV_CACHE_DTYPES, SCHEMES, kv_cache_dtype_named, needs_calibration
from trt_build.source.checkpoint import SourceCheckpoint, SourceHasher, resolve_dtype
from trt_build.source.hf_config import LlamaArchitecture, hf_tensor_shapes, read_hf_config

# Keys TensorRT-LLM accepts in both 0.13 and recent versions; `Mapping(**d)` / `QuantConfig(**d)`
# raise TypeError on anything else (spec §1.2, §1.3).
ALLOWED_MAPPING_KEYS = frozenset(
    {"world_size", "tp_size", "pp_size", "cp_size", "gpus_per_node", "moe_tp_size", "moe_ep_size"}
)
ALLOWED_QUANTIZATION_KEYS = frozenset(
    {
        "quant_algo",
        "kv_cache_quant_algo",
        "group_size",
        "smoothquant_val",
        "clamp_val",
        "has_zero_point",
        "pre_quant_scale",
        "exclude_modules",
    }
)
DTYPE_CHOICES = ("auto", "bfloat16", "float16")
BLOCK_BYTES = 64 << 20  # large unsplit tensors (embedding, lm_head) are streamed in row blocks this big
PREFETCH_DEPTH = 2  # tensor groups read ahead of the writer, per rank


# --- config.json -----------------------------------------------------------------------------------


def trtllm_config(
    arch: LlamaArchitecture,
    dtype: str,
    tp: int,
    pp: int,
    quantization: dict[str, Any],
    use_parallel_embedding: bool = False,
) -> dict[str, Any]:
    """The checkpoint config.json of spec §1.5, with only keys TensorRT-LLM accepts in mapping/quantization.

    quantization: the block to write (`QuantScheme.trtllm_block`).
    """
    mapping = {"world_size": tp * pp, "tp_size": tp, "pp_size": pp}
    unknown = (mapping.keys() - ALLOWED_MAPPING_KEYS) | (quantization.keys() - ALLOWED_QUANTIZATION_KEYS)
    if unknown:
        raise ValueError(f"keys TensorRT-LLM would reject in mapping/quantization: {sorted(unknown)}")
    return {
        "architecture": arch.architecture,
        "dtype": dtype,
        "logits_dtype": "float32",
        "vocab_size": arch.vocab_size,
        "max_position_embeddings": arch.max_position_embeddings,
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.num_hidden_layers,
        "num_attention_heads": arch.num_attention_heads,
        "num_key_value_heads": arch.num_key_value_heads,
        "head_size": arch.head_dim,
        "intermediate_size": arch.intermediate_size,
        "hidden_act": "silu",
        "norm_epsilon": arch.rms_norm_eps,
        "position_embedding_type": "rope_gpt_neox",
        "rotary_base": arch.rope_theta,
        "rotary_scaling": arch.rope_scaling,
        "mlp_bias": False,
        "attn_bias": False,
        "residual_mlp": False,
        "use_parallel_embedding": use_parallel_embedding,
        "embedding_sharding_dim": 0,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "mapping": mapping,
        "quantization": quantization,
    }


# --- producing one rank ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RankJob:
    rank: int
    tp: int
    plan: list[RankTensor]
    dtype: torch.dtype
    writer: LinearWriter
    source: SourceCheckpoint
    sha256: bool = True  # hash the rank file as it is written
    calibration: CalibrationResult | None = None
    group_size: int = 128
    fp8_kv_cache: bool = False  # add attention.kv_cache_scaling_factor after each layer's qkv

    def linear(self, tensor: RankTensor) -> LinearWeight:
        return LinearWeight(
            tensor, self.dtype, self.tp, self.rank % self.tp, self.source, self.calibration, self.group_size
        )

    def _kv_scale_name(self, tensor: RankTensor) -> str | None:
        """The KV cache scale that follows this tensor (the qkv of a layer), if any."""
        if not (self.fp8_kv_cache and tensor.rule.split is Split.QKV):
            return None
        return tensor.name.rsplit(".", 2)[0] + "." + KV_CACHE_SCALE

    def layout(self) -> list[TensorSpec]:
        """Every (name, dtype, shape) of the rank file, computed before any data is read."""
        specs: list[TensorSpec] = []
        for tensor in self.plan:
            if tensor.rule.linear:
                specs += self.writer.linear_layout(self.linear(tensor))
            else:
                specs.append((tensor.name, self.dtype, tensor.shape))
            if kv_name := self._kv_scale_name(tensor):
                specs.append((kv_name, torch.float32, (1,)))
        return specs

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in layout order; large plain tensors come as consecutive row blocks."""
        for tensor in self.plan:
            if tensor.rule.linear:
                parts = [self.source.read(piece, dtype=self.dtype) for piece in tensor.slices]
                weight = parts[0] if len(parts) == 1 else torch.cat(parts)
                del parts
                yield from self.writer.linear_transform(self.linear(tensor), weight)
                del weight
                if kv_name := self._kv_scale_name(tensor):
                    assert self.calibration is not None
                    scales = ql.kv_cache_trtllm(*self.calibration.kv_amax(tensor.layer))
                    yield kv_name, scales[KV_CACHE_SCALE].float().reshape(1)
            else:
                for piece in tensor.slices:
                    yield from self._row_blocks(tensor.name, piece)

    def _row_blocks(self, name: str, piece: SourceSlice) -> Iterator[tuple[str, torch.Tensor]]:
        """Rows of one slice in blocks of about BLOCK_BYTES, then its zero padding rows."""
        row_shape = piece.shape(self.source.shapes[piece.hf])[1:]
        step = max(1, BLOCK_BYTES // tensor_bytes(self.dtype, row_shape))
        for start in range(piece.row_start, piece.row_stop, step):
            yield name, self.source.read(piece, start, min(start + step, piece.row_stop), self.dtype)
        if piece.pad_rows:
            yield name, torch.zeros((piece.pad_rows, *row_shape), dtype=self.dtype)


@dataclass
class RankResult:
    name: str
    bytes: int
    sha256: str | None  # None with --no-sha256
    tensors: int
    seconds: float
    hash_seconds: float


def convert_rank(job: RankJob, directory: Path, cancel: threading.Event, position: int) -> RankResult:
    """Write rank{N}.safetensors: header from the layout, then each tensor group as it is produced."""
    started = time.perf_counter()
    layout = job.layout()
    path = directory / f"rank{job.rank}.safetensors"
    metadata = {"format": "pt", "producer": f"swallow-trt {__version__}"}
    total = sum(tensor_bytes(dtype, shape) for _, dtype, shape in layout)
    with (
        RankFileWriter(path, layout, metadata, sha256=job.sha256) as writer,
        tqdm(
            total=total, unit="B", unit_scale=True, desc=f"rank{job.rank}", position=position, leave=False
        ) as bar,
    ):
        for name, tensor in prefetched(job.tensors(), PREFETCH_DEPTH, cancel):
            if cancel.is_set():
                raise Cancelled()
            writer.write(name, tensor)
            bar.update(tensor.numel() * tensor.element_size())
            bar.set_postfix_str(name, refresh=False)
            del tensor
    seconds = time.perf_counter() - started
    return RankResult(
        path.name,
        writer.total_bytes,
        writer.digest.hexdigest() if writer.digest else None,
        len(layout),
        seconds,
        writer.hash_seconds,
    )


def _run_ranks(jobs: list[RankJob], directory: Path, workers: int) -> list[RankResult]:
    """Convert ranks on `workers` threads; any failure or interrupt cancels the others before returning."""
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convert-rank") as pool:
        futures: list[Future[RankResult]] = [
            pool.submit(convert_rank, job, directory, cancel, index % workers)
            for index, job in enumerate(jobs)
        ]
        try:
            pending = set(futures)
            while pending:  # short waits keep the main thread responsive to Ctrl-C / SIGTERM
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                for future in finished:
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            wait(futures)
            raise
    return [future.result() for future in futures]


def convert_checkpoint(
    model_dir: Path,
    output: Path,
    dtype: str = "auto",
    tp: int = 1,
    pp: int = 1,
    quant: str = "none",
    workers: int = 1,
    overwrite: bool = False,
    use_parallel_embedding: bool = False,
    sha256: bool = True,
    quant_options: QuantOptions | None = None,
) -> Path:
    """Convert an HF Llama model directory into a TensorRT-LLM checkpoint directory; returns `output`.

    sha256: hash source and rank files for the manifest (about 1 s per GB of CPU; False skips it).
    quant_options: KV cache dtype, AWQ group size and the calibration (run first when the scheme needs it).
    """
    started = time.perf_counter()
    release_freed_memory_eagerly()
    model_dir, output = Path(model_dir), Path(output)
    options = quant_options or QuantOptions()
    refuse_existing(output, overwrite)
    if quant not in LINEAR_WRITERS:
        raise SwallowTrtError(
            f"--quant {quant!r} is not known.", f"Choose one of {', '.join(LINEAR_WRITERS)}."
        )
    kv_cache_dtype_named(options.kv_cache_dtype)
    writer = LINEAR_WRITERS[quant]
    arch = read_hf_config(model_dir)
    check_parallelism(arch, tp, pp)
    dtype_name = resolve_dtype(dtype, arch)
    source = SourceCheckpoint(model_dir)
    plans = [rank_plan(arch, tp, pp, rank, use_parallel_embedding) for rank in range(tp * pp)]
    if SCHEMES[quant].group_size:
        check_awq_group(arch, tp, options.group_size)
    needed = {piece.hf for plan in plans for tensor in plan for piece in tensor.slices}
    source.validate(needed, hf_tensor_shapes(arch))
    torch_dtype = getattr(torch, dtype_name)
    fp8_kv_cache = options.kv_cache_dtype == "fp8"
    calibration, calibration_record = None, None
    if needs_calibration(quant, options.kv_cache_dtype):
        if torch_dtype == torch.float16:
            source.check_range(needed, torch_dtype)
        calibration, calibration_record = run_calibration(model_dir, quant, options, arch)
    jobs = [
        RankJob(
            rank, tp, plan, torch_dtype, writer, source, sha256, calibration, options.group_size, fp8_kv_cache
        )
        for rank, plan in enumerate(plans)
    ]
    quantization = SCHEMES[quant].trtllm_block(options.group_size, options.kv_cache_dtype)
    options_record = {
        "model_dir": str(model_dir),
        "dtype": dtype_name,
        "tp": tp,
        "pp": pp,
        "quant": quant,
        "kv_cache_dtype": options.kv_cache_dtype,
        "group_size": options.group_size if quant == "int4_awq" else None,
        "workers": workers,
        "use_parallel_embedding": use_parallel_embedding,
        "sha256": sha256,
    }
    hasher = SourceHasher([*source.files, model_dir / "config.json"], model_dir, compute=sha256)
    hasher.start()
    try:
        with atomic_output_dir(output, overwrite=overwrite) as tmp:
            config = trtllm_config(arch, dtype_name, tp, pp, quantization, use_parallel_embedding)
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            convert_started = time.perf_counter()
            results = _run_ranks(jobs, tmp, max(1, min(workers, len(jobs))))
            convert_seconds = time.perf_counter() - convert_started
            if calibration is not None:  # extra files are harmless to trtllm-build
                save_calibration(tmp, calibration, calibration_record)
            source_files = hasher.result()
            write_manifest(
                tmp,
                "convert",
                tool_version=__version__,
                options=options_record,
                source={"model_dir": str(model_dir.resolve()), "files": source_files},
                ranks=[vars(result) for result in results],
                calibration=calibration_record,
                timings={
                    "calibration_seconds": calibration_record["seconds"] if calibration_record else 0.0,
                    "convert_seconds": round(convert_seconds, 3),
                    "total_seconds": round(time.perf_counter() - started, 3),
                    "per_rank_seconds": [round(result.seconds, 3) for result in results],
                    "rank_sha256_seconds": [round(result.hash_seconds, 3) for result in results],
                    "source_sha256_seconds": round(hasher.seconds, 3),
                },
            )
    finally:
        hasher.stop.set()
    return output


@click.command(cls=SwallowTrtCommand)
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Hugging Face model directory (config.json + *.safetensors).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Checkpoint dir to write: TensorRT-LLM (--target engine) or ModelOpt unified HF (--target pytorch).",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPE_CHOICES),
    default="auto",
    show_default=True,
    help="Weight/activation dtype; auto = the model's config.json dtype.",
)
@click.option(
    "--tp", type=click.IntRange(min=1), default=1, show_default=True, help="Tensor-parallel degree."
)
@click.option(
    "--pp", type=click.IntRange(min=1), default=1, show_default=True, help="Pipeline-parallel degree."
)
@click.option(
    "--quant",
    type=click.Choice(sorted(LINEAR_WRITERS)),
    default="none",
    show_default=True,
    help="Quantization scheme for linear weights.",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(list(KV_CACHE_DTYPES)),
    default="auto",
    show_default=True,
    help="fp8: FP8 KV cache, a per-layer kv_cache_scaling_factor (needs calibration).",
)
@calibration_options
@click.option(
    "--calibration",
    "calibration_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Reuse a calibration directory (swallow-trt calibrate, or <checkpoint>/calibration).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ranks converted concurrently.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
@click.option(
    "--target",
    type=click.Choice(TARGET_CHOICES),
    default="engine",
    show_default=True,
    help="engine: TensorRT-LLM checkpoint for trtllm-build; pytorch: ModelOpt unified HF checkpoint for the "
    "PyTorch backend (--quant fp8|int4_awq); auto: by the installed TensorRT-LLM version.",
)
@click.option(
    "--sha256/--no-sha256",
    default=True,
    show_default=True,
    help="Record sha256 of source and rank files in manifest.json (costs about 1 s of CPU per GB).",
)
@click.option(
    "--use-parallel-embedding",
    is_flag=True,
    help="Shard the vocab embedding over TP ranks (embedding_sharding_dim 0) instead of replicating it.",
)
def command(
    model_dir: Path,
    output: Path,
    dtype: str,
    tp: int,
    pp: int,
    quant: str,
    workers: int,
    overwrite: bool,
    use_parallel_embedding: bool,
    sha256: bool,
    kv_cache_dtype: str,
    group_size: int,
    calib_data: str,
    calib_size: int,
    calib_seq_len: int,
    device: str,
    calibration_dir: Path | None,
    target: str = "engine",
) -> None:
    """Convert a Hugging Face Llama checkpoint into a TensorRT-LLM checkpoint (config.json + rank files),
    or with --target pytorch into a quantized ModelOpt unified HF checkpoint for TensorRT-LLM's PyTorch backend.

    With --quant fp8 / int4_awq or --kv-cache-dtype fp8 the model is calibrated first, layer by layer.
    """
    options = QuantOptions(
        kv_cache_dtype, group_size, calib_data, calib_size, calib_seq_len, device, calibration_dir
    )
    if resolve_target(target) == "pytorch":
        from trt_build.convert.modelopt import unified_command

        unified_command(model_dir, output, dtype, tp, pp, quant, overwrite, sha256, options, workers)
        return
    with interruption_explained(output):
        convert_checkpoint(
            model_dir,
            output,
            dtype,
            tp,
            pp,
            quant,
            workers,
            overwrite,
            use_parallel_embedding,
            sha256,
            quant_options=options,
        )
    manifest = json.loads((output / "manifest.json").read_text())
    size = sum(rank["bytes"] for rank in manifest["ranks"])
    calibrated = manifest["timings"].get("calibration_seconds") or 0.0
    click.echo(
        f"wrote {output}: {len(manifest['ranks'])} rank file(s), {size / 1e9:.2f} GB, "
        f"{manifest['timings']['convert_seconds']:.1f} s"
        + (f" after {calibrated:.1f} s of calibration" if calibrated else "")
        + f", peak RSS {manifest['peak_rss_bytes'] / 1e9:.2f} GB"
    )
