"""`swallow-trt convert`: Hugging Face Llama safetensors -> TensorRT-LLM checkpoint, in bounded memory.

Spec: `shared/reference/trtllm-checkpoint.md` §1-3. TensorRT-LLM's own converter loads the whole model and
is killed for lack of host RAM on 70B. Here every rank file is a stream: its layout (names, dtypes,
shapes) is computed from `weight_map.rank_plan` before any data is read, the safetensors header is
written from it, and then tensors are produced one group at a time (read only this rank's slice,
transform, write, release), so peak memory is one tensor group whatever the number of layers.

Quantization plugs in through `QUANT_SCHEMES`: a scheme decides what tensors a linear weight becomes
(`linear_layout`, known before reading data) and produces them (`linear_transform`). Schemes that need
data (FP8 activations, AWQ, an FP8 KV cache) get a `CalibrationResult`, computed first, layer by layer
(`trt_build.calibrate`), or reused from a directory; the tensor math is `quant_schemes` (spec §4).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
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
from trt_build import quant_schemes as qs
from trt_build.calibrate import GROUP_OF, CalibrationResult
from trt_build.hf_config import LlamaArchitecture, hf_tensor_shapes, read_hf_config
from trt_build.manifest import sha256_file, write_manifest
from trt_build.outdir import Terminated, atomic_output_dir, refuse_existing
from trt_build.safetensors_stream import StreamingSafetensorsWriter, TensorSpec, tensor_bytes
from trt_build.targets import TARGET_CHOICES, resolve_target
from trt_build.weight_map import (
    RankTensor,
    SourceSlice,
    Split,
    check_parallelism,
    rank_plan,
)

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
    calibration: CalibrationResult | None = None  # amaxes / AWQ scales, for schemes that need data
    group_size: int = 128  # AWQ group size along the input dimension

    @property
    def prefix(self) -> str:
        """The module name, e.g. transformer.layers.0.attention.qkv (scale tensors hang off it)."""
        return self.tensor.name.removesuffix(".weight")

    @property
    def hf_linear(self) -> str:
        """The first HF linear it is made of, inside the layer: self_attn.q_proj for qkv."""
        return self.tensor.rule.hf[0].removeprefix("model.layers.{L}.").removesuffix(".weight")

    def calibrated(self) -> CalibrationResult:
        if self.calibration is None:
            raise ValueError(f"{self.tensor.name}: this quantization scheme needs a calibration result")
        return self.calibration


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


def _fp8_layout(linear: LinearWeight) -> list[TensorSpec]:
    """Spec §4.1: e4m3 weight, per-tensor f32 [1] weight and activation scales."""
    return [
        (f"{linear.prefix}.weight", torch.float8_e4m3fn, linear.tensor.shape),
        (f"{linear.prefix}.weights_scaling_factor", torch.float32, (1,)),
        (f"{linear.prefix}.activation_scaling_factor", torch.float32, (1,)),
    ]


def _fp8_input(linear: LinearWeight, weight: torch.Tensor) -> qs.LinearQuantInput:
    """Amaxes of the whole fused group (qkv; fc+gate) over the full matrix: the same scale on every rank."""
    calibration, layer, group = linear.calibrated(), linear.tensor.layer, GROUP_OF[linear.hf_linear]
    return qs.LinearQuantInput(
        weight.to(linear.dtype),
        input_amax=calibration.group_input_amax(layer, group),
        weight_amax=calibration.group_weight_amax(layer, group),
        dtype=linear.dtype,
    )


def _awq_layout(linear: LinearWeight) -> list[TensorSpec]:
    """Spec §4.2: int4 packed along out into int8 [out/2, in], scales [out, in/group], prequant [in]."""
    out_features, in_features = linear.tensor.shape
    return [
        (f"{linear.prefix}.weight", torch.int8, (out_features // 2, in_features)),
        (
            f"{linear.prefix}.weights_scaling_factor",
            torch.float32,
            (out_features, in_features // linear.group_size),
        ),
        (f"{linear.prefix}.prequant_scaling_factor", linear.dtype, (in_features,)),
    ]


def _awq_input(linear: LinearWeight, weight: torch.Tensor) -> qs.LinearQuantInput:
    """The pre-quant scale is replicated on column linears and split with the input on row linears; it
    is rounded to the checkpoint dtype first, so the weight is smoothed with exactly the stored value."""
    pre_quant = linear.calibrated().pre_quant_scale(linear.tensor.layer, linear.hf_linear)
    if linear.tensor.rule.split is Split.ROW:
        piece = linear.tensor.slices[0]
        pre_quant = pre_quant[piece.col_start : piece.col_stop]
    return qs.LinearQuantInput(
        weight.to(linear.dtype),
        pre_quant_scale=pre_quant.to(linear.dtype),
        group_size=linear.group_size,
        dtype=linear.dtype,
    )


def _quantized_scheme(
    name: str,
    layout: Callable[[LinearWeight], list[TensorSpec]],
    make_input: Callable[[LinearWeight, torch.Tensor], qs.LinearQuantInput],
    description: str,
) -> QuantScheme:
    """A scheme whose linears are written by `quant_schemes.SCHEMES[name].trtllm_linear`, in layout order."""
    emit = qs.SCHEMES[name].trtllm_linear
    assert emit is not None

    def transform(linear: LinearWeight, weight: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        tensors = emit(make_input(linear, weight))
        for tensor_name, dtype, _ in layout(linear):
            yield tensor_name, tensors[tensor_name.removeprefix(linear.prefix + ".")].to(dtype).contiguous()

    return QuantScheme(dict(qs.SCHEMES[name].quantization), layout, transform, description)


def _weight_only_scheme(name: str, description: str) -> QuantScheme:
    """Spec §4.3, the recommended path: bf16 weights, trtllm-build quantizes them per channel."""
    return QuantScheme(dict(qs.SCHEMES[name].quantization), _plain_layout, _plain_transform, description)


QUANT_SCHEMES: dict[str, QuantScheme] = {
    "none": QuantScheme(
        quantization={"quant_algo": None, "kv_cache_quant_algo": None},
        linear_layout=_plain_layout,
        linear_transform=_plain_transform,
        description="unquantized weights in --dtype",
    ),
    "fp8": _quantized_scheme(
        "fp8", _fp8_layout, _fp8_input, "FP8 e4m3 weights and activations, per-tensor static scales"
    ),
    "int4_awq": _quantized_scheme(
        "int4_awq", _awq_layout, _awq_input, "INT4 AWQ weights (group-wise), bf16 activations"
    ),
    "int8_wo": _weight_only_scheme("int8_wo", "INT8 weight-only per channel, quantized by trtllm-build"),
    "int4_wo": _weight_only_scheme("int4_wo", "INT4 weight-only per channel, quantized by trtllm-build"),
}
KV_CACHE_DTYPES = ("auto", "fp8")
KV_CACHE_SCALE = "kv_cache_scaling_factor"  # per layer, beside attention.qkv (spec §4.1)


def quantization_block(quant: str, group_size: int = 128, kv_cache_dtype: str = "auto") -> dict[str, Any]:
    """The config.json `quantization` block of spec §1.3 for these options."""
    block = dict(QUANT_SCHEMES[quant].quantization)
    if "group_size" in block:
        block["group_size"] = group_size
    block["kv_cache_quant_algo"] = "FP8" if kv_cache_dtype == "fp8" else None
    return block


def check_group_size_per_rank(plans: list[list[RankTensor]], group_size: int, tp: int) -> None:
    """AWQ groups run along each rank's input slice, so the group size must divide every rank's `in`."""
    for tensor in (tensor for plan in plans for tensor in plan if tensor.rule.linear):
        in_features = tensor.shape[1]
        if in_features % group_size:
            full = in_features * tp if tensor.rule.split is Split.ROW else in_features
            raise click.ClickException(
                f"--group-size {group_size} does not divide the input dimension {in_features} of "
                f"{tensor.name} on a rank (full input {full}, --tp {tp}). Use a --group-size that divides "
                f"{in_features} (for example {math.gcd(in_features, group_size)}), or a smaller --tp."
            )


# --- config.json -----------------------------------------------------------------------------------


def trtllm_config(
    arch: LlamaArchitecture,
    dtype: str,
    tp: int,
    pp: int,
    scheme: QuantScheme,
    use_parallel_embedding: bool = False,
    quantization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint config.json of spec §1.5, with only keys TensorRT-LLM accepts in mapping/quantization.

    quantization: the block to write (`quantization_block`); default the scheme's own.
    """
    mapping = {"world_size": tp * pp, "tp_size": tp, "pp_size": pp}
    quantization = dict(scheme.quantization if quantization is None else quantization)
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
    scheme: QuantScheme
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
                specs += self.scheme.linear_layout(self.linear(tensor))
            else:
                specs.append((tensor.name, self.dtype, tensor.shape))
            if kv_name := self._kv_scale_name(tensor):
                specs.append((kv_name, torch.float32, (1,)))
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
                if kv_name := self._kv_scale_name(tensor):
                    assert self.calibration is not None
                    scales = qs.kv_cache_trtllm(*self.calibration.kv_amax(tensor.layer))
                    yield kv_name, scales[KV_CACHE_SCALE].float().reshape(1)
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


@dataclass(frozen=True)
class QuantOptions:
    """Options of `--quant` schemes beyond the scheme name (the calibration and its inputs)."""

    kv_cache_dtype: str = "auto"  # auto (the model dtype) | fp8
    group_size: int = 128  # AWQ group size
    calib_data: str = "builtin"  # builtin | FILE.jsonl | FILE.txt
    calib_size: int = 128
    calib_seq_len: int = 512
    device: str = "cpu"  # where calibration runs
    calibration_dir: Path | None = None  # reuse a saved CalibrationResult instead of calibrating


CALIBRATION_SUBDIR = "calibration"  # inside the checkpoint: reusable with --calibration


def _load_calibration(
    directory: Path, quant: str, options: QuantOptions, arch: LlamaArchitecture
) -> tuple[CalibrationResult, dict[str, Any]]:
    """A saved CalibrationResult that fits this model and scheme, plus the description of its data."""
    from trt_build.calibrate import CALIBRATION_ALGORITHMS

    result = CalibrationResult.load(directory)
    info = result.info
    calibrated = {key: info.get("architecture", {}).get(key) for key in ("hidden_size", "num_hidden_layers")}
    expected = {"hidden_size": arch.hidden_size, "num_hidden_layers": arch.num_hidden_layers}
    if result.num_layers != arch.num_hidden_layers or calibrated != expected:
        raise click.ClickException(
            f"{directory} was calibrated for another model ({calibrated}, this one {expected}); "
            "calibrate this model or pass its own calibration directory."
        )
    missing = set(CALIBRATION_ALGORITHMS[quant]) - set(info.get("algorithms", []))
    if missing:
        raise click.ClickException(
            f"{directory} was calibrated for --quant {result.scheme} ({', '.join(info.get('algorithms', []))}); "
            f"--quant {quant} also needs {', '.join(sorted(missing))}. Calibrate with --quant {quant}."
        )
    if "awq" in CALIBRATION_ALGORITHMS[quant] and info.get("group_size") != options.group_size:
        raise click.ClickException(
            f"{directory} holds AWQ scales searched with group size {info.get('group_size')}; pass "
            f"--group-size {info.get('group_size')} or calibrate again with --group-size {options.group_size}."
        )
    manifest_path = Path(directory) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    data = manifest.get("calibration_data") or manifest.get("calibration", {}).get("data") or {}
    return result, data


def run_calibration(
    model_dir: Path, quant: str, options: QuantOptions, arch: LlamaArchitecture
) -> tuple[CalibrationResult, dict[str, Any]]:
    """(result, the manifest's `calibration` record): calibrate layer by layer, or load a saved one."""
    started = time.perf_counter()
    if options.calibration_dir is not None:
        result, data = _load_calibration(options.calibration_dir, quant, options, arch)
    else:
        result, data = _calibrate(model_dir, quant, options, arch)
    seconds = time.perf_counter() - started
    record = {
        "reused_from": str(options.calibration_dir) if options.calibration_dir else None,
        "data": data,
        "tokens_sha256": result.info.get("calib_tokens_sha256"),
        "calib_size": result.info.get("calib_samples"),
        "calib_seq_len": result.info.get("calib_seq_len"),
        "device": result.info.get("device"),
        "algorithms": result.info.get("algorithms"),
        "group_size": result.info.get("group_size"),
        "seconds": round(seconds, 3),
        "seconds_per_layer": result.info.get("seconds_per_layer"),
        "layers": layer_scale_stats(result, quant, options.kv_cache_dtype == "fp8"),
    }
    click.echo(
        f"calibration: {result.num_layers} layers, "
        + ", ".join(f"{s:.2f}" for s in result.info.get("seconds_per_layer", []))
        + " s per layer",
        err=True,
    )
    return result, record


def save_calibration(checkpoint: Path, calibration: CalibrationResult, record: dict[str, Any]) -> None:
    """Keep the calibration inside the checkpoint, so `--calibration CKPT/calibration` can reuse it."""
    (checkpoint / CALIBRATION_SUBDIR).mkdir()
    calibration.save(checkpoint / CALIBRATION_SUBDIR)
    write_manifest(
        checkpoint / CALIBRATION_SUBDIR,
        "calibrate",
        scheme=calibration.scheme,
        calibration_data=record["data"],
    )


def _calibrate(
    model_dir: Path, quant: str, options: QuantOptions, arch: LlamaArchitecture
) -> tuple[CalibrationResult, dict[str, Any]]:
    from trt_build.calib_data import calibration_tokens
    from trt_build.calibrate import calibrate

    batch = calibration_tokens(
        options.calib_data,
        options.calib_size,
        options.calib_seq_len,
        max_position_embeddings=arch.max_position_embeddings,
    )
    result = calibrate(model_dir, quant, batch.tokens, options.device, group_size=options.group_size)
    return result, batch.describe()


def layer_scale_stats(result: CalibrationResult, quant: str, fp8_kv_cache: bool) -> list[dict[str, Any]]:
    """Per layer and fused group (qkv, o, gate_up, down): the amaxes and the scales written from them."""
    from trt_build import quant_formats as qf
    from trt_build.calibrate import FUSED_GROUPS

    layers = []
    for layer in range(result.num_layers):
        stats = result.stats.get(str(layer), {})
        entry: dict[str, Any] = {"layer": layer, "seconds": stats.get("seconds")}
        for group in FUSED_GROUPS:
            input_amax = result.group_input_amax(layer, group)
            weight_amax = result.group_weight_amax(layer, group)
            figures: dict[str, Any] = {"input_amax": input_amax.item(), "weight_amax": weight_amax.item()}
            if quant == "fp8":
                figures["activation_scaling_factor"] = qf.fp8_scale(input_amax).item()
                figures["weights_scaling_factor"] = qf.fp8_scale(weight_amax).item()
            if quant == "int4_awq":
                found = stats.get(group, {})
                keys = ("alpha", "pre_quant_min", "pre_quant_max", "pre_quant_mean", "mse_rtn", "mse_awq")
                figures.update({key: found.get(key) for key in keys})
            entry[group] = figures
        if fp8_kv_cache:
            k_amax, v_amax = result.kv_amax(layer)
            entry["kv_cache"] = {
                "k_amax": k_amax.item(),
                "v_amax": v_amax.item(),
                KV_CACHE_SCALE: qs.kv_cache_trtllm(k_amax, v_amax)[KV_CACHE_SCALE].item(),
            }
        layers.append(entry)
    return layers


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
    from trt_build.calibrate import needs_calibration

    started = time.perf_counter()
    release_freed_memory_eagerly()
    model_dir, output = Path(model_dir), Path(output)
    options = quant_options or QuantOptions()
    refuse_existing(output, overwrite)
    if quant not in QUANT_SCHEMES:
        raise click.ClickException(
            f"--quant {quant!r} is not known; choose one of {', '.join(QUANT_SCHEMES)}."
        )
    if options.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise click.ClickException(
            f"--kv-cache-dtype {options.kv_cache_dtype!r} is not known; choose one of {', '.join(KV_CACHE_DTYPES)}."
        )
    scheme = QUANT_SCHEMES[quant]
    arch = read_hf_config(model_dir)
    check_parallelism(arch, tp, pp)
    dtype_name = resolve_dtype(dtype, arch)
    source = SourceCheckpoint(model_dir)
    plans = [rank_plan(arch, tp, pp, rank, use_parallel_embedding) for rank in range(tp * pp)]
    if quant == "int4_awq":
        check_group_size_per_rank(plans, options.group_size, tp)
    needed = {piece.hf for plan in plans for tensor in plan for piece in tensor.slices}
    source.validate(needed, hf_tensor_shapes(arch))
    torch_dtype = getattr(torch, dtype_name)
    fp8_kv_cache = options.kv_cache_dtype == "fp8"
    calibration, calibration_record = None, None
    if needs_calibration(quant, options.kv_cache_dtype):
        calibration, calibration_record = run_calibration(model_dir, quant, options, arch)
    jobs = [
        RankJob(
            rank, tp, plan, torch_dtype, scheme, source, sha256, calibration, options.group_size, fp8_kv_cache
        )
        for rank, plan in enumerate(plans)
    ]
    quantization = quantization_block(quant, options.group_size, options.kv_cache_dtype)
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
            config = trtllm_config(arch, dtype_name, tp, pp, scheme, use_parallel_embedding, quantization)
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


@click.command()
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
    type=click.Choice(sorted(QUANT_SCHEMES)),
    default="none",
    show_default=True,
    help="Quantization scheme for linear weights.",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(KV_CACHE_DTYPES),
    default="auto",
    show_default=True,
    help="fp8: FP8 KV cache, a per-layer kv_cache_scaling_factor (needs calibration).",
)
@click.option(
    "--group-size",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="int4_awq: input channels per scale; must divide every rank's input dimension.",
)
@click.option(
    "--calib-data",
    default="builtin",
    show_default=True,
    help="Calibration text: builtin (Japanese-first set), FILE.jsonl (text or chat messages) or FILE.txt.",
)
@click.option(
    "--calib-size", type=click.IntRange(min=1), default=128, show_default=True, help="Calibration rows."
)
@click.option(
    "--calib-seq-len", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per row."
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where calibration runs (one decoder layer at a time).",
)
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
        from trt_build.hf_export import unified_command

        unified_command(model_dir, output, dtype, tp, pp, quant, overwrite, sha256, options, workers)
        return
    try:
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
    except (KeyboardInterrupt, Terminated) as error:
        reason = str(error) or "interrupted"
        raise click.ClickException(
            f"{reason}: the partial output was removed; {output} was not written."
        ) from None
    manifest = json.loads((output / "manifest.json").read_text())
    size = sum(rank["bytes"] for rank in manifest["ranks"])
    calibrated = manifest["timings"].get("calibration_seconds") or 0.0
    click.echo(
        f"wrote {output}: {len(manifest['ranks'])} rank file(s), {size / 1e9:.2f} GB, "
        f"{manifest['timings']['convert_seconds']:.1f} s"
        + (f" after {calibrated:.1f} s of calibration" if calibrated else "")
        + f", peak RSS {manifest['peak_rss_bytes'] / 1e9:.2f} GB"
    )
