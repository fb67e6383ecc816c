"""A TensorRT-LLM checkpoint read back as a Hugging Face state dict, whatever its TP/PP and quant_algo.

It inverts `weight_map.WEIGHT_MAP`: the rank shards of every pipeline stage are merged, KV-head duplication
and vocab padding are undone, and the HF names come back. Each linear is read through its quant_algo's
`formats.trtllm_checkpoint.LINEAR_FORMATS` entry (the same table the converter writes with); the static FP8
activation and KV cache scales become a `FakeQuant`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trt_build.formats.safetensors_stream import open_safetensors
from trt_build.formats.trtllm_checkpoint import LinearShard, kv_cache_scale_name, linear_format
from trt_build.formats.trtllm_config import CheckpointError, rank_file, read_trtllm_checkpoint
from trt_build.parallel.weight_map import WEIGHT_MAP, Stage, WeightRule, merge, pp_layers
from trt_build.source.checkpoint import torch_dtype
from trt_build.source.hf_config import LlamaArchitecture
from trt_build.verify.fake_quant import FakeQuant


class _RankFiles:
    """Open rank files of a checkpoint; tensors are read on demand."""

    def __init__(self, checkpoint_dir: Path, world_size: int):
        self.handles = []
        for rank in range(world_size):
            path = Path(checkpoint_dir) / rank_file(rank)
            if not path.is_file():
                raise CheckpointError(f"{path} is missing; the checkpoint has world_size {world_size}.")
            self.handles.append(open_safetensors(path))
        self.names = [set(handle.keys()) for handle in self.handles]

    def get(self, rank: int, name: str) -> torch.Tensor:
        if name not in self.names[rank]:
            raise CheckpointError(f"{rank_file(rank)} has no tensor {name}.")
        return self.handles[rank].get_tensor(name)

    def module_tensors(self, rank: int, prefix: str) -> dict[str, torch.Tensor]:
        start = prefix + "."
        return {
            name[len(start) :]: self.get(rank, name) for name in self.names[rank] if name.startswith(start)
        }


def _places(rule: WeightRule, arch: LlamaArchitecture, pp: int) -> list[tuple[int, int | None, int | None]]:
    """(pipeline stage, stage-local layer, global layer) of every instance of a weight-map row."""
    if rule.stage is Stage.LAYER:
        return [
            (stage, local, layer)
            for stage in range(pp)
            for local, layer in enumerate(pp_layers(arch.num_hidden_layers, pp, stage))
        ]
    return [(0 if rule.stage is Stage.FIRST else pp - 1, None, None)]


def checkpoint_fake_quant(checkpoint_dir: Path) -> FakeQuant:
    """The static FP8 activation and KV cache scales of a checkpoint (rank 0 of each stage: every TP rank
    holds the same per-tensor value), mapped onto the HF modules they act on."""
    checkpoint = read_trtllm_checkpoint(checkpoint_dir, check_ranks=False)
    arch, tp, pp = checkpoint.arch, checkpoint.tp, checkpoint.pp
    activation_suffix = linear_format(checkpoint.quant_algo).activation_scale
    kv_fp8 = checkpoint.kv_cache_quant_algo == "FP8"
    activations: dict[str, float] = {}
    kv_cache: dict[str, float] = {}
    if not (activation_suffix or kv_fp8):
        return FakeQuant(activations, kv_cache)
    files = _RankFiles(Path(checkpoint_dir), tp * pp)
    for rule in (rule for rule in WEIGHT_MAP if rule.linear):
        for stage, local, layer in _places(rule, arch, pp):
            prefix = rule.trt.format(i=local).removesuffix(".weight")
            if activation_suffix:
                scale = float(files.get(stage * tp, f"{prefix}.{activation_suffix}").reshape(()))
                for template in rule.hf:
                    activations[template.format(L=layer).removesuffix(".weight")] = scale
            if kv_fp8 and prefix.endswith("attention.qkv"):
                scale = float(files.get(stage * tp, kv_cache_scale_name(prefix)).reshape(()))
                kv_cache[f"model.layers.{layer}.self_attn"] = scale
    return FakeQuant(activations, kv_cache)


def checkpoint_state_dict(
    checkpoint_dir: Path, dtype: torch.dtype | None = None
) -> tuple[LlamaArchitecture, dict[str, torch.Tensor]]:
    """The HF state dict (names, merged shapes) of a TensorRT-LLM checkpoint of any TP/PP, in `dtype`
    (default the checkpoint's)."""
    checkpoint = read_trtllm_checkpoint(checkpoint_dir, check_ranks=False)
    arch, tp, pp = checkpoint.arch, checkpoint.tp, checkpoint.pp
    quantization = checkpoint.quantization
    read_linear = linear_format(checkpoint.quant_algo).read
    checkpoint_dtype = torch_dtype(checkpoint.config.get("dtype", "bfloat16"))
    target = dtype or checkpoint_dtype
    parallel_embedding = bool(checkpoint.config.get("use_parallel_embedding", False))
    files = _RankFiles(Path(checkpoint_dir), tp * pp)

    def pieces(rule: WeightRule, stage: int, local: int | None) -> list[torch.Tensor]:
        name = rule.trt.format(i=local)
        ranks = range(stage * tp, (stage + 1) * tp)
        if not rule.linear:
            return [files.get(rank, name) for rank in ranks]
        prefix = name.removesuffix(".weight")
        shards = [LinearShard(prefix, files.module_tensors(rank, prefix), checkpoint_dtype) for rank in ranks]
        return [read_linear(shard, quantization) for shard in shards]

    state: dict[str, torch.Tensor] = {}
    for rule in WEIGHT_MAP:
        for stage, local, layer in _places(rule, arch, pp):
            merged = merge(rule, pieces(rule, stage, local), arch, parallel_embedding)
            for template, tensor in zip(rule.hf, merged, strict=True):
                state[template.format(L=layer)] = tensor.to(target).contiguous()
    return arch, state
