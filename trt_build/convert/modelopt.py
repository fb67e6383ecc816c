"""`swallow-trt convert --target pytorch`: a quantized HF checkpoint in NVIDIA ModelOpt's unified format.

TensorRT-LLM's PyTorch backend (and vLLM / SGLang for FP8) load it directly. Facts:
`shared/reference/trtllm-pytorch-backend.md` §2 (2.1 files and config, 2.2 per-linear tensors).

The same layer-by-layer calibration as the engine target (`convert_calibration.run_calibration`, reusable with
`--calibration DIR`) is written in ModelOpt naming instead of TRT-LLM naming:

  config.json              the source config in both transformers forms + `quantization_config` (flat)
  hf_quant_config.json     `{producer, quantization}` (nested): the only file TRT-LLM 1.1/1.2 read
  model*.safetensors       HF names; per linear `weight` + `weight_scale` (+ `input_scale` for FP8,
                           + `pre_quant_scale` on o_proj/down_proj for AWQ); FP8 KV `k_proj.k_scale`,
                           `v_proj.v_scale`; AWQ q/k/v and gate/up pre-quant scales folded into the norms;
                           sharded with `model.safetensors.index.json` above `max_shard_bytes`
  generation_config.json, tokenizer files   copied from the source (never code)
  calibration/, manifest.json               as the engine target

Streaming: the layout (names, dtypes, shapes) is known before any data is read, each shard's header is
written from it, then tensors are produced one HF tensor at a time (embeddings in row blocks), so peak
memory is one linear whatever the model size. `--quant none` is refused: the PyTorch backend loads the
Hugging Face directory itself, a copy would add nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from tqdm import tqdm

from trt_build import __version__
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir, interruption_explained, refuse_existing
from trt_build.convert.calibration import QuantOptions, run_calibration, save_calibration
from trt_build.convert.rank_writer import RankFileWriter, release_freed_memory_eagerly
from trt_build.formats.modelopt_config import (
    MODELOPT_FORMAT_VERSION,
    UNIFIED,
    hf_quant_config,
    unified_config,
)
from trt_build.formats.safetensors_stream import TensorSpec, shard_layout, tensor_bytes
from trt_build.parallel.rules import check_awq_group
from trt_build.quant import linear as ql
from trt_build.quant import numerics as qf
from trt_build.quant.calibrate import GROUP_OF, CalibrationResult
from trt_build.quant.schemes import SCHEMES, needs_calibration
from trt_build.source.checkpoint import SourceCheckpoint, SourceHasher, resolve_dtype
from trt_build.source.hf_config import LlamaArchitecture, hf_tensor_shapes, read_hf_config
from trt_build.source.tokenizer import GENERATION_CONFIG, TOKENIZER_FILES

DEFAULT_MAX_SHARD_BYTES = 5 << 30  # transformers' save_pretrained default (5 GB)
BLOCK_BYTES = 64 << 20  # embedding / lm_head rows streamed in blocks this big
# Copied from the source when present: generation defaults and the tokenizer (no code, no weights).
COPIED_FILES = (GENERATION_CONFIG, *TOKENIZER_FILES)


# What each scheme's linears become in the unified format (quant/linear.py).
LINEAR_EMITTERS: dict[str, Callable[[ql.LinearQuantInput], dict[str, torch.Tensor]]] = {
    "fp8": ql.fp8_modelopt_hf,
    "int4_awq": ql.awq_modelopt_hf,
}
# Linears whose AWQ pre-quant scale is folded into the RMSNorm in front of them (§2.2), by that norm.
AWQ_FOLDED_NORM = {
    "input_layernorm": "self_attn.q_proj",  # q/k/v share one pre-quant scale
    "post_attention_layernorm": "mlp.gate_proj",  # gate/up share one
}
AWQ_KEEPS_PRE_QUANT = ("self_attn.o_proj", "mlp.down_proj")
KV_SCALE_AFTER = {"self_attn.k_proj": "k_proj.k_scale", "self_attn.v_proj": "v_proj.v_scale"}


def refuse_unsupported(quant: str, kv_cache_dtype: str) -> None:
    if quant == "none":
        kv_hint = (
            " An FP8 KV cache needs no checkpoint change on the PyTorch backend: pass --kv-cache-dtype fp8 "
            "to `swallow-trt build --target pytorch` (it runs with unit K/V scales, reference §2.3)."
            if kv_cache_dtype == "fp8"
            else ""
        )
        raise click.ClickException(
            "--target pytorch --quant none: the PyTorch backend loads the Hugging Face directory directly, so "
            "there is nothing to convert. Pass the model directory to `swallow-trt build --target pytorch "
            "--checkpoint HF_DIR`." + kv_hint
        )
    if quant not in UNIFIED:
        raise click.ClickException(
            f"--target pytorch does not write --quant {quant}: the unified checkpoint holds "
            f"{', '.join(UNIFIED)} (the PyTorch backend's Llama formats usable on Hopper). Use "
            f"--quant fp8 or int4_awq, or --target engine for {quant}."
        )


# ---------------------------------------------------------------- per-tensor plan


@dataclass(frozen=True)
class HfTensor:
    """One source tensor and where it sits: layer (None outside layers) and name inside the layer."""

    name: str
    shape: tuple[int, ...]
    layer: int | None
    local: str  # e.g. "self_attn.q_proj" for a linear, "input_layernorm" for a norm, "" outside layers

    @property
    def is_linear(self) -> bool:
        return self.layer is not None and self.local in GROUP_OF

    @property
    def prefix(self) -> str:
        return self.name.removesuffix(".weight")


def hf_tensors(arch: LlamaArchitecture) -> list[HfTensor]:
    tensors = []
    for name, shape in hf_tensor_shapes(arch).items():
        parts = name.split(".")
        if parts[:2] == ["model", "layers"]:
            tensors.append(HfTensor(name, shape, int(parts[2]), ".".join(parts[3:-1])))
        else:
            tensors.append(HfTensor(name, shape, None, ""))
    return tensors


@dataclass(frozen=True)
class UnifiedWriterPlan:
    """Everything that decides the output tensors: the layout is a function of this alone."""

    arch: LlamaArchitecture
    quant: str
    dtype: torch.dtype
    group_size: int
    fp8_kv_cache: bool

    def specs(self, tensor: HfTensor) -> list[TensorSpec]:
        """The output tensors one source tensor becomes, in write order."""
        if not tensor.is_linear:
            return [(tensor.name, self.dtype, tensor.shape)]
        out_features, in_features = tensor.shape
        p = tensor.prefix
        if self.quant == "fp8":
            specs = [
                (f"{p}.weight", torch.float8_e4m3fn, (out_features, in_features)),
                (f"{p}.weight_scale", torch.float32, ()),
                (f"{p}.input_scale", torch.float32, ()),
            ]
        else:
            specs = [
                (f"{p}.weight", torch.uint8, (out_features // 2, in_features)),
                (f"{p}.weight_scale", torch.float32, (out_features, in_features // self.group_size)),
            ]
            if tensor.local in AWQ_KEEPS_PRE_QUANT:
                specs.append((f"{p}.pre_quant_scale", self.dtype, (in_features,)))
        if self.fp8_kv_cache and tensor.local in KV_SCALE_AFTER:
            specs.append(
                (f"model.layers.{tensor.layer}.self_attn.{KV_SCALE_AFTER[tensor.local]}", torch.float32, ())
            )
        return specs

    def layout(self) -> list[TensorSpec]:
        return [spec for tensor in hf_tensors(self.arch) for spec in self.specs(tensor)]


def linear_tensors(
    plan: UnifiedWriterPlan, tensor: HfTensor, weight: torch.Tensor, calibration: CalibrationResult
) -> dict[str, torch.Tensor]:
    """{output name: tensor} of one linear, from `LINEAR_EMITTERS`.

    FP8: the weight scale is this linear's own (q/k/v keep separate ones, §2.2); the input scale is the
    fused group's (identical over q/k/v and gate/up). AWQ: the pre-quant scale is rounded to the checkpoint
    dtype first, so weights are smoothed with exactly the value stored (o/down) or folded (the others).
    `weight` is already in plan.dtype (read through `source_checkpoint.checked_cast`).
    """
    layer, local = tensor.layer, tensor.local
    assert layer is not None
    if plan.quant == "fp8":
        quant_input = ql.LinearQuantInput(
            weight,
            input_amax=calibration.group_input_amax(layer, GROUP_OF[local]),
            weight_amax=calibration.weight_amax(layer, local),
            dtype=plan.dtype,
        )
    else:
        quant_input = ql.LinearQuantInput(
            weight,
            pre_quant_scale=calibration.pre_quant_scale(layer, local).to(plan.dtype),
            group_size=plan.group_size,
            dtype=plan.dtype,
        )
    emit = LINEAR_EMITTERS[plan.quant]
    produced = {f"{tensor.prefix}.{suffix}": value for suffix, value in emit(quant_input).items()}
    if plan.fp8_kv_cache and local in KV_SCALE_AFTER:
        kv = ql.kv_cache_modelopt_hf(*calibration.kv_amax(layer))
        key = KV_SCALE_AFTER[local]
        produced[f"model.layers.{layer}.self_attn.{key}"] = kv[key]
    return produced


def norm_tensor(
    plan: UnifiedWriterPlan, tensor: HfTensor, weight: torch.Tensor, calibration: CalibrationResult | None
) -> torch.Tensor:
    """RMSNorm weights as stored; for AWQ the q/k/v (gate/up) pre-quant scale is folded in (§2.2)."""
    if plan.quant != "int4_awq" or tensor.layer is None or tensor.local not in AWQ_FOLDED_NORM:
        return weight
    assert calibration is not None
    pre_quant = calibration.pre_quant_scale(tensor.layer, AWQ_FOLDED_NORM[tensor.local]).to(plan.dtype)
    return qf.fold_pre_quant_scale_into_norm(weight, pre_quant)


def produce(
    plan: UnifiedWriterPlan, source: SourceCheckpoint, calibration: CalibrationResult | None
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) in layout order; embeddings and lm_head as consecutive row blocks. Every source
    tensor is read in the checkpoint dtype through `source_checkpoint.checked_cast`."""
    from trt_build.parallel.weight_map import SourceSlice

    for tensor in hf_tensors(plan.arch):
        if tensor.is_linear:
            assert calibration is not None
            weight = source.read(SourceSlice(tensor.name, 0, tensor.shape[0]), dtype=plan.dtype)
            produced = linear_tensors(plan, tensor, weight, calibration)
            for name, dtype, _ in plan.specs(tensor):
                yield name, produced[name].to(dtype).contiguous()
        elif len(tensor.shape) == 1:
            yield (
                tensor.name,
                norm_tensor(
                    plan,
                    tensor,
                    source.read(SourceSlice(tensor.name, 0, tensor.shape[0]), dtype=plan.dtype),
                    calibration,
                ),
            )
        else:
            rows, step = tensor.shape[0], max(1, BLOCK_BYTES // tensor_bytes(plan.dtype, tensor.shape[1:]))
            for start in range(0, rows, step):
                piece = SourceSlice(tensor.name, 0, rows)
                yield tensor.name, source.read(piece, start, min(start + step, rows), plan.dtype)


# ---------------------------------------------------------------- shards


def write_shards(
    directory: Path,
    shards: list[tuple[str, list[TensorSpec]]],
    tensors: Iterator[tuple[str, torch.Tensor]],
    sha256: bool,
) -> list[dict[str, Any]]:
    """Stream `tensors` into the shard files in order; returns name, bytes and sha256 of each."""
    shard_of = {name: index for index, (_, shard) in enumerate(shards) for name, _, _ in shard}
    total = sum(tensor_bytes(dtype, shape) for _, shard in shards for _, dtype, shape in shard)
    metadata = {"format": "pt", "producer": f"swallow-trt {__version__}"}
    written: list[dict[str, Any]] = []
    writer: RankFileWriter | None = None
    current = -1

    def finish() -> None:
        assert writer is not None
        writer.close()
        written.append(
            {
                "name": writer.path.name,
                "bytes": writer.path.stat().st_size,
                "sha256": writer.digest.hexdigest() if writer.digest is not None else None,
            }
        )

    with tqdm(total=total, unit="B", unit_scale=True, desc="unified checkpoint", leave=False) as bar:
        try:
            for name, tensor in tensors:
                index = shard_of[name]
                if index != current:
                    if writer is not None:
                        finish()
                    current = index
                    writer = RankFileWriter(directory / shards[index][0], shards[index][1], metadata, sha256)
                assert writer is not None
                writer.write(name, tensor)
                bar.update(tensor.numel() * tensor.element_size())
            if writer is not None:
                finish()
                writer = None
        finally:
            if writer is not None:
                writer._handle.close()
    if len(written) != len(shards):
        raise ValueError(f"wrote {len(written)} of {len(shards)} shard files")
    return written


def weight_index(shards: list[tuple[str, list[TensorSpec]]]) -> dict[str, Any]:
    total = sum(tensor_bytes(dtype, shape) for _, shard in shards for _, dtype, shape in shard)
    return {
        "metadata": {"total_size": total},
        "weight_map": {name: file for file, shard in shards for name, _, _ in shard},
    }


# ---------------------------------------------------------------- the export


def export_unified_checkpoint(
    model_dir: Path,
    output: Path,
    quant: str,
    options: QuantOptions,
    dtype: str = "auto",
    overwrite: bool = False,
    sha256: bool = True,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Calibrate (or load `options.calibration_dir`) and write the ModelOpt unified checkpoint; returns output."""
    started = time.perf_counter()
    release_freed_memory_eagerly()
    model_dir, output = Path(model_dir), Path(output)
    refuse_existing(output, overwrite)
    refuse_unsupported(quant, options.kv_cache_dtype)
    arch = read_hf_config(model_dir)
    dtype_name = resolve_dtype(dtype, arch)
    if dtype_name == "float32":
        raise click.ClickException(
            "--target pytorch writes bfloat16 or float16 checkpoints; pass --dtype bfloat16."
        )
    torch_dtype = getattr(torch, dtype_name)
    plan = UnifiedWriterPlan(arch, quant, torch_dtype, options.group_size, options.kv_cache_dtype == "fp8")
    if SCHEMES[quant].group_size:
        check_awq_group(arch, 1, options.group_size)
    source = SourceCheckpoint(model_dir)
    needed = {t.name for t in hf_tensors(arch)}
    source.validate(needed, hf_tensor_shapes(arch))
    assert needs_calibration(quant, options.kv_cache_dtype)
    if torch_dtype == torch.float16:
        source.check_range(needed, torch_dtype)
    calibration, calibration_record = run_calibration(model_dir, quant, options, arch)
    shards = shard_layout(plan.layout(), max_shard_bytes)
    hasher = SourceHasher([*source.files, model_dir / "config.json"], model_dir, compute=sha256)
    hasher.start()
    try:
        with atomic_output_dir(output, overwrite=overwrite) as tmp:
            config = unified_config(arch, dtype_name, quant, options.kv_cache_dtype)
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            quant_config = hf_quant_config(quant, options.kv_cache_dtype, options.group_size)
            (tmp / "hf_quant_config.json").write_text(json.dumps(quant_config, indent=4) + "\n")
            copied = [name for name in COPIED_FILES if (model_dir / name).is_file()]
            for name in copied:
                shutil.copyfile(model_dir / name, tmp / name)
            write_started = time.perf_counter()
            files = write_shards(tmp, shards, produce(plan, source, calibration), sha256)
            write_seconds = time.perf_counter() - write_started
            if len(shards) > 1:
                (tmp / "model.safetensors.index.json").write_text(
                    json.dumps(weight_index(shards), indent=2) + "\n"
                )
            save_calibration(tmp, calibration, calibration_record)
            write_manifest(
                tmp,
                "convert",
                target="pytorch",
                format=f"ModelOpt {MODELOPT_FORMAT_VERSION} unified Hugging Face checkpoint",
                tool_version=__version__,
                options={
                    "model_dir": str(model_dir),
                    "dtype": dtype_name,
                    "quant": quant,
                    "quant_algo": UNIFIED[quant].quant_algo,
                    "kv_cache_dtype": options.kv_cache_dtype,
                    "group_size": options.group_size if quant == "int4_awq" else None,
                    "max_shard_bytes": max_shard_bytes,
                    "sha256": sha256,
                },
                quantization=quant_config["quantization"],
                source={"model_dir": str(model_dir.resolve()), "files": hasher.result()},
                files=files,
                copied=copied,
                calibration=calibration_record,
                timings={
                    "calibration_seconds": calibration_record["seconds"],
                    "convert_seconds": round(write_seconds, 3),
                    "total_seconds": round(time.perf_counter() - started, 3),
                },
            )
    finally:
        hasher.stop.set()
    return output


def unified_command(
    model_dir: Path,
    output: Path,
    dtype: str,
    tp: int,
    pp: int,
    quant: str,
    overwrite: bool,
    sha256: bool,
    options: QuantOptions,
    workers: int = 1,
) -> None:
    """The `convert --target pytorch` branch of the CLI: checks, export, one summary line."""
    if tp != 1 or pp != 1:
        raise click.ClickException(
            f"--target pytorch writes one unsharded checkpoint; the PyTorch backend splits it at load time "
            f"(--tp {tp} --pp {pp} belong to `swallow-trt build --target pytorch`). Drop --tp/--pp here."
        )
    with interruption_explained(output):
        export_unified_checkpoint(model_dir, output, quant, options, dtype, overwrite, sha256)
    manifest = json.loads((output / "manifest.json").read_text())
    size = sum(entry["bytes"] for entry in manifest["files"])
    click.echo(
        f"wrote {output}: ModelOpt unified checkpoint ({manifest['quantization']['quant_algo']}"
        + (", FP8 KV" if manifest["quantization"]["kv_cache_quant_algo"] else "")
        + f"), {len(manifest['files'])} safetensors file(s), {size / 1e9:.2f} GB, "
        f"{manifest['timings']['convert_seconds']:.1f} s after {manifest['timings']['calibration_seconds']:.1f} s "
        f"of calibration, peak RSS {manifest['peak_rss_bytes'] / 1e9:.2f} GB"
    )
