"""The pytorch target's writer: a quantized HF checkpoint in NVIDIA ModelOpt's unified format.

TensorRT-LLM's PyTorch backend (and vLLM / SGLang for FP8) load it directly (docs/modelopt-checkpoint.md):

  config.json              the source config in both transformers forms + `quantization_config` (flat)
  hf_quant_config.json     `{producer, quantization}` (nested): the only file TRT-LLM 1.1/1.2 read
  model*.safetensors       HF names, each linear as `formats/modelopt_checkpoint.LINEAR_FORMATS` says; AWQ q/k/v
                           and gate/up pre-quant scales folded into the norms; sharded with
                           `model.safetensors.index.json` above `max_shard_bytes`
  generation_config.json, tokenizer files   copied from the source (never code)

The layout is known before any data is read, each shard's header is written from it, then tensors are
produced one HF tensor at a time (embeddings in row blocks), so peak memory is one linear whatever the model
size. `--quant none` is refused: the PyTorch backend loads the Hugging Face directory itself.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.convert.options import ConvertJob, ConvertOptions
from trt_build.convert.streaming import row_blocks, write_files
from trt_build.formats import modelopt_checkpoint as unified
from trt_build.formats.modelopt_config import (
    HF_QUANT_CONFIG,
    MODELOPT_FORMAT_VERSION,
    UNIFIED,
    hf_quant_config,
    unified_config,
)
from trt_build.formats.safetensors_stream import TensorSpec, shard_index, shard_layout
from trt_build.parallel.rules import check_awq_group
from trt_build.parallel.weight_map import SourceSlice
from trt_build.quant.calibration_result import GROUP_OF, CalibrationResult
from trt_build.quant.linear import LinearQuantInput
from trt_build.quant.schemes import PYTORCH, SCHEMES
from trt_build.source.checkpoint import SourceCheckpoint, torch_dtype
from trt_build.source.hf_config import hf_tensor_shapes
from trt_build.source.tokenizer import GENERATION_CONFIG, TOKENIZER_FILES

# Copied from the source when present: generation defaults and the tokenizer (no code, no weights).
COPIED_FILES = (GENERATION_CONFIG, *TOKENIZER_FILES)
SHARD_INDEX = "model.safetensors.index.json"


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


class ModelOptWriter:
    """`convert --target pytorch`: the ModelOpt unified checkpoint of a job."""

    target = PYTORCH
    format = f"ModelOpt {MODELOPT_FORMAT_VERSION} unified Hugging Face checkpoint"

    @classmethod
    def refuse(cls, options: ConvertOptions) -> None:
        """Options this format cannot hold, refused before any tensor is read."""
        if options.tp != 1 or options.pp != 1:
            raise SwallowTrtError(
                f"--target pytorch writes one unsharded checkpoint; the PyTorch backend splits it at load time "
                f"(--tp {options.tp} --pp {options.pp} belong to `swallow-trt build --target pytorch`).",
                "Drop --tp/--pp here.",
            )
        quant, kv_cache_dtype = options.quant, options.quant_options.kv_cache_dtype
        if quant == "none":
            kv_hint = (
                " An FP8 KV cache needs no checkpoint change on the PyTorch backend: pass --kv-cache-dtype fp8 "
                "to `swallow-trt build --target pytorch` (it runs with unit K/V scales, "
                "docs/modelopt-checkpoint.md §3.5)."
                if kv_cache_dtype == "fp8"
                else ""
            )
            raise SwallowTrtError(
                "--target pytorch --quant none: the PyTorch backend loads the Hugging Face directory directly, "
                "so there is nothing to convert.",
                "Pass the model directory to `swallow-trt build --target pytorch --checkpoint HF_DIR`."
                + kv_hint,
            )
        if quant not in UNIFIED:
            raise SwallowTrtError(
                f"--target pytorch does not write --quant {quant}: the unified checkpoint holds "
                f"{', '.join(UNIFIED)} (the PyTorch backend's Llama formats usable on Hopper).",
                f"Use --quant fp8 or int4_awq, or --target engine for {quant}.",
            )

    def __init__(self, job: ConvertJob):
        if job.dtype_name == "float32":
            raise SwallowTrtError(
                "--target pytorch writes bfloat16 or float16 checkpoints;", "pass --dtype bfloat16."
            )
        if SCHEMES[job.options.quant].group_size:
            check_awq_group(job.arch, 1, job.group_size)
        self.job = job
        self.dtype = torch_dtype(job.dtype_name)
        self.quant_algo = UNIFIED[job.options.quant].quant_algo
        self.linear = unified.linear_format(self.quant_algo)
        self.fp8_kv_cache = job.fp8_kv_cache
        self.hf_tensors = [_place(name, shape) for name, shape in hf_tensor_shapes(job.arch).items()]

    def source_tensors(self) -> set[str]:
        return {tensor.name for tensor in self.hf_tensors}

    def quantization(self) -> dict[str, Any]:
        """hf_quant_config.json's `quantization` block."""
        return self._quant_config()["quantization"]

    def _quant_config(self) -> dict[str, Any]:
        return hf_quant_config(self.job.options.quant, self.job.kv_cache_dtype, self.job.group_size)

    def options_record(self) -> dict[str, Any]:
        return self.job.record(quant_algo=self.quant_algo, max_shard_bytes=self.job.options.max_shard_bytes)

    # ------------------------------------------------------------ the layout

    def specs(self, tensor: HfTensor) -> list[TensorSpec]:
        """The output tensors one source tensor becomes, in write order."""
        if not tensor.is_linear:
            return [(tensor.name, self.dtype, tensor.shape)]
        specs = self.linear.layout(tensor.local, tensor.shape, self.dtype, self.job.group_size)
        named = [(f"{tensor.prefix}.{suffix}", dtype, shape) for suffix, dtype, shape in specs]
        if self.fp8_kv_cache and tensor.local in unified.KV_CACHE_SCALES:
            named.append((f"{tensor.prefix}.{unified.KV_CACHE_SCALES[tensor.local]}", torch.float32, ()))
        return named

    def layout(self) -> list[TensorSpec]:
        return [spec for tensor in self.hf_tensors for spec in self.specs(tensor)]

    # ------------------------------------------------------------ the tensors

    def _quant_input(self, tensor: HfTensor, weight: torch.Tensor, calibration: CalibrationResult):
        """FP8: the weight scale is this linear's own (q/k/v keep separate ones), the input scale the fused
        group's. AWQ: the pre-quant scale is rounded to the checkpoint dtype first, so weights are smoothed
        with exactly the value stored (o/down) or folded (the others)."""
        layer, local = tensor.layer, tensor.local
        assert layer is not None
        if self.quant_algo == "FP8":
            return LinearQuantInput(
                weight,
                input_amax=calibration.group_input_amax(layer, GROUP_OF[local]),
                weight_amax=calibration.weight_amax(layer, local),
                dtype=self.dtype,
            )
        return LinearQuantInput(
            weight,
            pre_quant_scale=calibration.pre_quant_scale(layer, local).to(self.dtype),
            group_size=self.job.group_size,
            dtype=self.dtype,
        )

    def _linear(
        self, tensor: HfTensor, weight: torch.Tensor, calibration: CalibrationResult
    ) -> Iterator[tuple[str, torch.Tensor]]:
        assert self.linear.emit is not None and tensor.layer is not None
        produced = {
            f"{tensor.prefix}.{suffix}": value
            for suffix, value in self.linear.emit(self._quant_input(tensor, weight, calibration)).items()
        }
        if self.fp8_kv_cache and tensor.local in unified.KV_CACHE_SCALES:
            scale = unified.kv_cache_scales(*calibration.kv_amax(tensor.layer))[tensor.local]
            produced[f"{tensor.prefix}.{unified.KV_CACHE_SCALES[tensor.local]}"] = scale
        for name, dtype, _ in self.specs(tensor):
            yield name, produced[name].to(dtype).contiguous()

    def _norm(self, tensor: HfTensor, weight: torch.Tensor, calibration: CalibrationResult) -> torch.Tensor:
        """RMSNorm weights as stored; for AWQ the q/k/v (gate/up) pre-quant scale is folded in."""
        if self.quant_algo != "W4A16_AWQ" or tensor.layer is None:
            return weight
        layer = tensor.layer
        return unified.fold_into_norm(
            tensor.local, weight, lambda linear: calibration.pre_quant_scale(layer, linear).to(self.dtype)
        )

    def tensors(
        self, source: SourceCheckpoint, calibration: CalibrationResult
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in layout order; embeddings and lm_head as consecutive row blocks."""
        for tensor in self.hf_tensors:
            whole = SourceSlice(tensor.name, 0, tensor.shape[0])
            if tensor.is_linear:
                yield from self._linear(tensor, source.read(whole, dtype=self.dtype), calibration)
            elif len(tensor.shape) == 1:
                yield tensor.name, self._norm(tensor, source.read(whole, dtype=self.dtype), calibration)
            else:
                for block in row_blocks(source, whole, self.dtype):
                    yield tensor.name, block

    # ------------------------------------------------------------ the files

    def write(
        self, directory: Path, source: SourceCheckpoint, calibration: CalibrationResult | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The configs, the copied files and the shards; returns (the manifest's `files` and `copied`, {})."""
        assert calibration is not None  # every unified scheme is calibrated
        job = self.job
        config = unified_config(job.arch, job.dtype_name, job.options.quant, job.kv_cache_dtype)
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (directory / HF_QUANT_CONFIG).write_text(json.dumps(self._quant_config(), indent=4) + "\n")
        model_dir = Path(job.options.model_dir)
        copied = [name for name in COPIED_FILES if (model_dir / name).is_file()]
        for name in copied:
            shutil.copyfile(model_dir / name, directory / name)
        shards = shard_layout(self.layout(), job.options.max_shard_bytes)
        files = [(directory / name, layout) for name, layout in shards]
        written = write_files(
            files, self.tensors(source, calibration), job.options.sha256, "unified checkpoint"
        )
        if len(shards) > 1:
            (directory / SHARD_INDEX).write_text(json.dumps(shard_index(shards), indent=2) + "\n")
        records = [{"name": w.name, "bytes": w.bytes, "sha256": w.sha256} for w in written]
        return {"files": records, "copied": copied}, {}


def _place(name: str, shape: tuple[int, ...]) -> HfTensor:
    parts = name.split(".")
    if parts[:2] == ["model", "layers"]:
        return HfTensor(name, shape, int(parts[2]), ".".join(parts[3:-1]))
    return HfTensor(name, shape, None, "")
