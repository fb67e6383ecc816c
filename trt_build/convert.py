"""`swallow-trt convert`: Hugging Face Llama safetensors -> TensorRT-LLM checkpoint, in bounded memory.

Spec: `shared/reference/trtllm-checkpoint.md` §1-3. TensorRT-LLM's own converter loads the whole model and
is killed for lack of host RAM on 70B. Here every rank file is a stream: its layout (names, dtypes,
shapes) is computed from `weight_map.rank_plan` before any data is read, the safetensors header is
written from it, and then tensors are produced one group at a time (read only this rank's slice,
transform, write, release), so peak memory is one tensor group whatever the number of layers.

Quantization plugs in through `QUANT_SCHEMES`: a scheme decides what tensors a linear weight becomes
(`linear_layout`, known before reading data) and produces them (`linear_transform`).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import torch
from safetensors import safe_open
from tqdm import tqdm

from trt_build import __version__
from trt_build.hf_config import LlamaArchitecture, read_hf_config
from trt_build.manifest import sha256_file, write_manifest
from trt_build.outdir import Terminated, atomic_output_dir, refuse_existing
from trt_build.safetensors_stream import StreamingSafetensorsWriter, TensorSpec, tensor_bytes
from trt_build.weight_map import RankTensor, SourceSlice, check_parallelism, hf_shapes, rank_plan

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
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
BLOCK_BYTES = 64 << 20  # large unsplit tensors (embedding, lm_head) are streamed in row blocks this big
PREFETCH_DEPTH = 2  # tensor groups read ahead of the writer, per rank
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


# --- reading the source lazily ---------------------------------------------------------------------


class SourceCheckpoint:
    """The HF safetensors of a model directory, read lazily: only the slices a rank needs."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        self.files = self._find_files()
        self.location: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        for path in self.files:
            with safe_open(path, framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    piece = handle.get_slice(name)
                    self.location[name] = path
                    self.shapes[name] = tuple(piece.get_shape())
                    self.dtypes[name] = piece.get_dtype()

    def _find_files(self) -> list[Path]:
        index = self.model_dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            files = sorted({self.model_dir / name for name in weight_map.values()})
            missing = [path.name for path in files if not path.is_file()]
            if missing:
                raise click.ClickException(
                    f"{index.name} lists {', '.join(missing)}, which are not in {self.model_dir}; "
                    "the download is incomplete. Download the missing shards and run again."
                )
            return files
        files = sorted(self.model_dir.glob("*.safetensors"))
        if files:
            return files
        pickles = sorted(p.name for p in self.model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise click.ClickException(
                f"{self.model_dir} holds only pickle checkpoints ({', '.join(pickles[:3])}). Loading a pickle "
                "can execute arbitrary code, so swallow-trt reads only safetensors. Download the "
                "*.safetensors files of the model (huggingface-cli download REPO --include '*.safetensors' "
                "'*.json'), or convert the pickle yourself in a sandbox you trust."
            )
        raise click.ClickException(f"no *.safetensors files in {self.model_dir}.")

    def validate(self, needed: set[str], expected: dict[str, tuple[int, ...]]) -> None:
        """Every needed tensor exists and has the shape config.json implies."""
        missing = sorted(needed - self.location.keys())
        if missing:
            raise click.ClickException(
                f"{len(missing)} tensor(s) the conversion needs are missing from {self.model_dir}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. Is the download complete, "
                "and is config.json from the same model?"
            )
        for name in (name for name in expected if name in needed):  # model order: first layer first
            if self.shapes[name] != expected[name]:
                raise click.ClickException(
                    f"tensor {name} in {self.location[name].name} has shape {list(self.shapes[name])}, but "
                    f"config.json implies {list(expected[name])}. config.json and the weights do not match."
                )
            if self.dtypes[name] not in ("BF16", "F16", "F32"):
                raise click.ClickException(
                    f"tensor {name} is {self.dtypes[name]}; convert reads bf16/fp16/fp32 weights. Quantized "
                    "source checkpoints are not supported."
                )

    def read(
        self, piece: SourceSlice, row_start: int | None = None, row_stop: int | None = None
    ) -> torch.Tensor:
        """Rows of a slice (default: all of it, without padding), read through a handle closed at once
        so no mapped file pages stay resident."""
        start = piece.row_start if row_start is None else row_start
        stop = piece.row_stop if row_stop is None else row_stop
        with safe_open(self.location[piece.hf], framework="pt") as handle:
            view = handle.get_slice(piece.hf)
            if len(self.shapes[piece.hf]) == 1:
                return view[start:stop]
            return view[start:stop, piece.col_start : piece.col_stop]


# --- quantization schemes: the extension point for linear weights ---------------------------------


@dataclass(frozen=True)
class LinearWeight:
    """What a quant scheme sees of one linear weight of one rank (e.g. one rank's qkv)."""

    tensor: RankTensor  # TRT-LLM name, rule, layer, HF slices, rank shape
    dtype: torch.dtype  # checkpoint dtype of activations and unquantized weights
    tp: int
    tp_rank: int
    source: SourceCheckpoint  # to read whole HF tensors when a scale must be shared by all ranks

    @property
    def prefix(self) -> str:
        """The module name, e.g. transformer.layers.0.attention.qkv (scale tensors hang off it)."""
        return self.tensor.name.removesuffix(".weight")


@dataclass(frozen=True)
class QuantScheme:
    """How `--quant NAME` writes linear weights: config block, layout (from shapes only) and transform."""

    quantization: dict[str, Any]
    linear_layout: Callable[[LinearWeight], list[TensorSpec]]
    linear_transform: Callable[[LinearWeight, torch.Tensor], Iterator[tuple[str, torch.Tensor]]]
    description: str = ""


def _plain_layout(linear: LinearWeight) -> list[TensorSpec]:
    return [(linear.tensor.name, linear.dtype, linear.tensor.shape)]


def _plain_transform(linear: LinearWeight, weight: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    yield linear.tensor.name, weight.to(linear.dtype)


QUANT_SCHEMES: dict[str, QuantScheme] = {
    "none": QuantScheme(
        quantization={"quant_algo": None, "kv_cache_quant_algo": None},
        linear_layout=_plain_layout,
        linear_transform=_plain_transform,
        description="unquantized weights in --dtype",
    ),
}


# --- config.json -----------------------------------------------------------------------------------


def trtllm_config(
    arch: LlamaArchitecture,
    dtype: str,
    tp: int,
    pp: int,
    scheme: QuantScheme,
    use_parallel_embedding: bool = False,
) -> dict[str, Any]:
    """The checkpoint config.json of spec §1.5, with only keys TensorRT-LLM accepts in mapping/quantization."""
    mapping = {"world_size": tp * pp, "tp_size": tp, "pp_size": pp}
    unknown = (mapping.keys() - ALLOWED_MAPPING_KEYS) | (
        scheme.quantization.keys() - ALLOWED_QUANTIZATION_KEYS
    )
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
        "quantization": dict(scheme.quantization),
    }


# --- producing one rank ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RankJob:
    rank: int
    tp: int
    plan: list[RankTensor]
    dtype: torch.dtype
    scheme: QuantScheme
    source: SourceCheckpoint
    sha256: bool = True  # hash the rank file as it is written

    def linear(self, tensor: RankTensor) -> LinearWeight:
        return LinearWeight(tensor, self.dtype, self.tp, self.rank % self.tp, self.source)

    def layout(self) -> list[TensorSpec]:
        """Every (name, dtype, shape) of the rank file, computed before any data is read."""
        specs: list[TensorSpec] = []
        for tensor in self.plan:
            if tensor.rule.linear:
                specs += self.scheme.linear_layout(self.linear(tensor))
            else:
                specs.append((tensor.name, self.dtype, tensor.shape))
        return specs

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in layout order; large plain tensors come as consecutive row blocks."""
        for tensor in self.plan:
            if tensor.rule.linear:
                parts = [self.source.read(piece) for piece in tensor.slices]
                weight = parts[0] if len(parts) == 1 else torch.cat(parts)
                del parts
                yield from self.scheme.linear_transform(self.linear(tensor), weight)
                del weight
            else:
                for piece in tensor.slices:
                    yield from self._row_blocks(tensor.name, piece)

    def _row_blocks(self, name: str, piece: SourceSlice) -> Iterator[tuple[str, torch.Tensor]]:
        """Rows of one slice in blocks of about BLOCK_BYTES, then its zero padding rows."""
        row_shape = piece.shape(self.source.shapes[piece.hf])[1:]
        step = max(1, BLOCK_BYTES // tensor_bytes(self.dtype, row_shape))
        for start in range(piece.row_start, piece.row_stop, step):
            yield name, self.source.read(piece, start, min(start + step, piece.row_stop)).to(self.dtype)
        if piece.pad_rows:
            yield name, torch.zeros((piece.pad_rows, *row_shape), dtype=self.dtype)


class RankFileWriter(StreamingSafetensorsWriter):
    """A streaming writer that accepts a tensor as consecutive row blocks and hashes what it writes."""

    def __init__(
        self,
        path: Path,
        layout: list[TensorSpec],
        metadata: dict[str, str] | None = None,
        sha256: bool = True,
    ):
        super().__init__(path, layout, metadata)
        self._handle.flush()
        # the header is all that is written so far
        self.digest = hashlib.sha256(Path(path).read_bytes()) if sha256 else None
        self._rows_written = 0
        self.hash_seconds = 0.0  # time spent in sha256, reported in the manifest

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self.layout):
            raise ValueError(f"{self.path.name}: unexpected extra tensor {name!r}")
        expected, dtype, shape = self.layout[self._next]
        rows = tensor.shape[0] if tensor.dim() else 1
        fits = tuple(tensor.shape[1:]) == tuple(shape[1:]) and self._rows_written + rows <= (shape or (1,))[0]
        if name != expected or tensor.dtype != dtype or not fits:
            raise ValueError(
                f"{self.path.name}: expected {expected} {dtype} {list(shape)} (rows {self._rows_written}+), "
                f"got {name} {tensor.dtype} {list(tensor.shape)}"
            )
        data = memoryview(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
        self._handle.write(data)
        if self.digest is not None:
            started = time.perf_counter()
            self.digest.update(data)
            self.hash_seconds += time.perf_counter() - started
        self._rows_written += rows
        if self._rows_written == (shape or (1,))[0]:
            self._next += 1
            self._rows_written = 0


T = TypeVar("T")


class Cancelled(Exception):
    """Another rank failed or the run was interrupted; this rank stops at its next tensor."""


def prefetched(items: Iterator[T], depth: int, cancel: threading.Event) -> Iterator[T]:
    """Run `items` in a reader thread, `depth` items ahead, so reading overlaps writing."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item: Any) -> bool:
        while not (stop.is_set() or cancel.is_set()):
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(error)
            return
        put(done)

    reader = threading.Thread(target=run, name="convert-reader", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = slots.get(timeout=0.1)
            except queue.Empty:
                if cancel.is_set():
                    raise Cancelled() from None
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
    finally:
        stop.set()
        reader.join()


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


def _recorded_sha256(model_dir: Path) -> dict[str, dict[str, Any]]:
    """Files whose sha256 `swallow-trt fetch` recorded from the hub (LFS metadata), by name."""
    manifest = model_dir / "manifest.json"
    if not manifest.is_file():
        return {}
    recorded = json.loads(manifest.read_text())
    if recorded.get("stage") != "fetch":
        return {}
    return {entry["name"]: entry for entry in recorded.get("files", []) if entry.get("sha256")}


class SourceHasher(threading.Thread):
    """sha256 of each source file, on a thread beside the conversion. Hashing 140 GB takes minutes,
    so a digest is reused when it is already known: from the fetch manifest (same size), or from the
    name of a Hugging Face cache blob."""

    def __init__(self, files: list[Path], root: Path, compute: bool = True):
        super().__init__(name="convert-source-sha256", daemon=True)
        self.files, self.root, self.compute = files, root, compute
        self.results: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        try:
            recorded = _recorded_sha256(self.root)
            for path in self.files:
                if self.stop.is_set():
                    return
                self.results.append(self._describe(path, recorded))
        except BaseException as error:  # re-raised by result() in the caller's thread
            self.error = error
        finally:
            self.seconds = time.perf_counter() - started

    def _describe(self, path: Path, recorded: dict[str, dict[str, Any]]) -> dict[str, Any]:
        name, size = str(path.relative_to(self.root)), path.stat().st_size
        entry, target = recorded.get(name), path.resolve()
        if entry and entry.get("bytes") == size:
            digest, origin = entry["sha256"], "fetch manifest"
        elif (
            path.is_symlink() and target.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", target.name)
        ):
            digest, origin = target.name, "hf cache blob name"
        elif self.compute:
            digest, origin = sha256_file(path), "computed"
        else:
            digest, origin = None, "not computed (--no-sha256)"
        return {"name": name, "bytes": size, "sha256": digest, "sha256_from": origin}

    def result(self) -> list[dict[str, Any]]:
        self.join()
        if self.error is not None:
            raise self.error
        return sorted(self.results, key=lambda entry: entry["name"])


def release_freed_memory_eagerly() -> None:
    """Make glibc give freed tensor buffers (>= 1 MiB) straight back to the OS.

    glibc raises its mmap threshold each time a large block is freed, after which 16-32 MB tensors
    come from thread arenas that fragment; peak RSS then grew with the layer count (measured: +28%
    from 2 to 6 layers of 8b-shape). A fixed threshold keeps it flat. No-op where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        return


def resolve_dtype(requested: str, arch: LlamaArchitecture) -> str:
    if requested != "auto":
        return requested
    return arch.dtype if arch.dtype in ("bfloat16", "float16", "float32") else "bfloat16"


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
) -> Path:
    """Convert an HF Llama model directory into a TensorRT-LLM checkpoint directory; returns `output`.

    sha256: hash source and rank files for the manifest (about 1 s per GB of CPU; False skips it).
    """
    started = time.perf_counter()
    release_freed_memory_eagerly()
    model_dir, output = Path(model_dir), Path(output)
    refuse_existing(output, overwrite)
    if quant not in QUANT_SCHEMES:
        raise click.ClickException(
            f"--quant {quant!r} is not known; choose one of {', '.join(QUANT_SCHEMES)}."
        )
    scheme = QUANT_SCHEMES[quant]
    arch = read_hf_config(model_dir)
    check_parallelism(arch, tp, pp)
    dtype_name = resolve_dtype(dtype, arch)
    source = SourceCheckpoint(model_dir)
    plans = [rank_plan(arch, tp, pp, rank, use_parallel_embedding) for rank in range(tp * pp)]
    needed = {piece.hf for plan in plans for tensor in plan for piece in tensor.slices}
    source.validate(needed, hf_shapes(arch))
    torch_dtype = getattr(torch, dtype_name)
    jobs = [RankJob(rank, tp, plan, torch_dtype, scheme, source, sha256) for rank, plan in enumerate(plans)]
    options = {
        "model_dir": str(model_dir),
        "dtype": dtype_name,
        "tp": tp,
        "pp": pp,
        "quant": quant,
        "workers": workers,
        "use_parallel_embedding": use_parallel_embedding,
        "sha256": sha256,
    }
    hasher = SourceHasher([*source.files, model_dir / "config.json"], model_dir, compute=sha256)
    hasher.start()
    try:
        with atomic_output_dir(output, overwrite=overwrite) as tmp:
            config = trtllm_config(arch, dtype_name, tp, pp, scheme, use_parallel_embedding)
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            convert_started = time.perf_counter()
            results = _run_ranks(jobs, tmp, max(1, min(workers, len(jobs))))
            convert_seconds = time.perf_counter() - convert_started
            source_files = hasher.result()
            write_manifest(
                tmp,
                "convert",
                tool_version=__version__,
                options=options,
                source={"model_dir": str(model_dir.resolve()), "files": source_files},
                ranks=[vars(result) for result in results],
                timings={
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


@click.command()
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Hugging Face model directory (config.json + *.safetensors).",
)
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="TensorRT-LLM checkpoint dir to write."
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
    type=click.Choice(sorted(QUANT_SCHEMES)),
    default="none",
    show_default=True,
    help="Quantization scheme for linear weights.",
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
) -> None:
    """Convert a Hugging Face Llama checkpoint into a TensorRT-LLM checkpoint (config.json + rank files)."""
    try:
        convert_checkpoint(
            model_dir, output, dtype, tp, pp, quant, workers, overwrite, use_parallel_embedding, sha256
        )
    except (KeyboardInterrupt, Terminated) as error:
        reason = str(error) or "interrupted"
        raise click.ClickException(
            f"{reason}: the partial output was removed; {output} was not written."
        ) from None
    manifest = json.loads((output / "manifest.json").read_text())
    size = sum(rank["bytes"] for rank in manifest["ranks"])
    click.echo(
        f"wrote {output}: {len(manifest['ranks'])} rank file(s), {size / 1e9:.2f} GB, "
        f"{manifest['timings']['convert_seconds']:.1f} s, peak RSS {manifest['peak_rss_bytes'] / 1e9:.2f} GB"
    )
