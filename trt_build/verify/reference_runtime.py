"""Reference runtime: any checkpoint `swallow-trt convert` writes, loaded back into a transformers model.

It is the proof of the converter (logits are compared with the source model) and the CPU engine
behind the Triton repository on machines without a GPU. It inverts `weight_map.WEIGHT_MAP`: rank
shards of every pipeline stage are merged, KV-head duplication and vocab padding are undone, and the
HF names come back. Reading a linear weight goes through `LINEAR_READERS`, keyed by the checkpoint's
`quant_algo`, so dequantizers (FP8, AWQ, weight-only) plug in as table entries; FP8 activation and KV
cache scales become fake-quant hooks (`install_fake_quant`).

Importing this module has no side effects (no click, no I/O); `load_checkpoint` is the public API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from trt_build.formats.modelopt_config import read_modelopt_quantization
from trt_build.formats.trtllm_config import (
    CheckpointError,
    architecture_from_checkpoint,
    read_checkpoint_config,
)
from trt_build.parallel.weight_map import WEIGHT_MAP, Stage, WeightRule, merge, pp_layers
from trt_build.quant import numerics as qf
from trt_build.source.hf_config import LLAMA_LINEARS, LlamaArchitecture

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def llama_config(arch: LlamaArchitecture, dtype: str | None = None):
    """A transformers LlamaConfig; the transformers-4 keyword form, which transformers 5 also accepts
    (it folds rope_theta/rope_scaling into rope_parameters)."""
    import transformers
    from transformers import LlamaConfig

    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    config = LlamaConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        head_dim=arch.head_dim,
        hidden_act="silu",
        rms_norm_eps=arch.rms_norm_eps,
        rope_theta=arch.rope_theta,
        rope_scaling=dict(arch.rope_scaling) if arch.rope_scaling else None,
        max_position_embeddings=arch.max_position_embeddings,
        tie_word_embeddings=arch.tie_word_embeddings,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=arch.bos_token_id,
        eos_token_id=arch.eos_token_id,
        **{dtype_key: dtype or arch.dtype},
    )
    return config


def checkpoint_llama_config(checkpoint_dir: Path):
    """LlamaConfig rebuilt from a TensorRT-LLM checkpoint's config.json."""
    return llama_config(architecture_from_checkpoint(read_checkpoint_config(checkpoint_dir)))


def build_model(arch: LlamaArchitecture, state_dict: dict[str, torch.Tensor], device: str = "cpu"):
    """A LlamaForCausalLM holding exactly `state_dict`, built without random initialisation.

    A checkpoint's lm_head is loaded as its own tensor even when the model ties embeddings, so the
    tensor the checkpoint holds is the one that is checked; a state dict without lm_head gets it tied.
    """
    from transformers import LlamaForCausalLM

    config = llama_config(arch, dtype=_dtype_name(next(iter(state_dict.values())).dtype))
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tie = arch.tie_word_embeddings and "lm_head.weight" not in state_dict
    model.load_state_dict(state_dict, strict=not tie, assign=True)
    if tie:
        model.lm_head.weight = model.model.embed_tokens.weight
    # RoPE tables are buffers computed from config, not weights: rebuild them off the meta device.
    with torch.device("cpu"):
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    return model.to(device).eval()


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


# --- reading linear weights: one entry per quant_algo ------------------------------------------------


@dataclass(frozen=True)
class LinearShard:
    """The tensors of one linear module of one rank, as the checkpoint holds them."""

    prefix: str  # e.g. transformer.layers.0.attention.qkv
    tensors: dict[str, torch.Tensor]  # suffix ("weight", "weights_scaling_factor", ...) -> tensor
    dtype: torch.dtype  # checkpoint dtype


def _read_plain(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
    return shard.tensors["weight"]


def _read_fp8(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
    """e4m3 weight times its per-tensor scale (spec §4.1)."""
    return qf.fp8_dequantize(shard.tensors["weight"], shard.tensors["weights_scaling_factor"].reshape(()))


def _read_awq(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
    """Unpack int4 rows, dequantize per group, multiply by the stored pre-quant scale: the weight the
    engine applies to `x` (it computes (x * prequant) @ dequant.T), spec §4.2."""
    packed, scales = shard.tensors["weight"], shard.tensors["weights_scaling_factor"]
    pre_quant = shard.tensors["prequant_scaling_factor"].reshape(-1)
    in_features = packed.shape[1]
    group_size = in_features // scales.shape[1]
    if (
        group_size * scales.shape[1] != in_features
        or quantization.get("group_size", group_size) != group_size
    ):
        raise CheckpointError(
            f"{shard.prefix}: weights_scaling_factor {list(scales.shape)} does not match input "
            f"{in_features} with group_size {quantization.get('group_size')}."
        )
    return qf.awq_dequantize(qf.unpack_int4_rows(packed), scales, pre_quant, group_size)


def _weight_only_reader(bits: int) -> Callable[[LinearShard, dict[str, Any]], torch.Tensor]:
    """bf16 weight as written; trtllm-build quantizes each rank's weight per output channel (amax/128,
    amax/8), so the same fake quant is applied here, per shard, before merging."""

    def read(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
        return qf.weight_only_fake_quant(shard.tensors["weight"], bits, "trtllm_build")

    return read


# quant_algo (None = unquantized) -> turns one rank's linear tensors into a dense weight in `dtype`
LINEAR_READERS: dict[str | None, Callable[[LinearShard, dict[str, Any]], torch.Tensor]] = {
    None: _read_plain,
    "FP8": _read_fp8,
    "W4A16_AWQ": _read_awq,
    "W8A16": _weight_only_reader(8),
    "W4A16": _weight_only_reader(4),
}
# quant_algo -> the linears' inputs are quantized at run time with a static per-tensor scale
ACTIVATION_SCALES: dict[str, str] = {"FP8": "activation_scaling_factor"}
KV_CACHE_SCALE = "kv_cache_scaling_factor"
FP8_KV_ATTENTION = "swallow_trt_fp8_kv_sdpa"


# --- loading -----------------------------------------------------------------------------------------


class _RankFiles:
    """Open rank files of a checkpoint; tensors are read on demand."""

    def __init__(self, checkpoint_dir: Path, world_size: int):
        self.handles = []
        for rank in range(world_size):
            path = Path(checkpoint_dir) / f"rank{rank}.safetensors"
            if not path.is_file():
                raise CheckpointError(f"{path} is missing; the checkpoint has world_size {world_size}.")
            self.handles.append(safe_open(path, framework="pt"))
        self.names = [set(handle.keys()) for handle in self.handles]

    def get(self, rank: int, name: str) -> torch.Tensor:
        if name not in self.names[rank]:
            raise CheckpointError(f"rank{rank}.safetensors has no tensor {name}.")
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


@dataclass(frozen=True)
class FakeQuant:
    """Run-time quantization the engine applies beyond the weights, keyed by HF module name."""

    activation_scales: dict[str, float]  # model.layers.{L}.self_attn.q_proj -> FP8 input scale
    kv_cache_scales: dict[str, float]  # model.layers.{L}.self_attn -> FP8 KV cache scale

    def __bool__(self) -> bool:
        return bool(self.activation_scales or self.kv_cache_scales)


def checkpoint_fake_quant(checkpoint_dir: Path) -> FakeQuant:
    """The static FP8 activation and KV cache scales of a checkpoint (rank 0 of each stage: every TP
    rank holds the same per-tensor value), mapped onto the HF modules they act on."""
    config = read_checkpoint_config(checkpoint_dir)
    arch = architecture_from_checkpoint(config)
    mapping = config.get("mapping", {})
    tp, pp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1))
    quantization = config.get("quantization") or {}
    activation_suffix = ACTIVATION_SCALES.get(quantization.get("quant_algo"))
    kv_fp8 = quantization.get("kv_cache_quant_algo") == "FP8"
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
                attention = prefix.removesuffix(".qkv")
                scale = float(files.get(stage * tp, f"{attention}.{KV_CACHE_SCALE}").reshape(()))
                kv_cache[f"model.layers.{layer}.self_attn"] = scale
    return FakeQuant(activations, kv_cache)


def _register_fp8_kv_attention() -> None:
    """SDPA over K/V that went through the FP8 cache: quantized and dequantized with the layer's scale."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(module, query, key, value, attention_mask, **kwargs):
        scale = getattr(module, "kv_cache_scale", None)
        if scale is not None:
            key, value = qf.fp8_fake_quant(key, scale), qf.fp8_fake_quant(value, scale)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(FP8_KV_ATTENTION, attention)


def install_fake_quant(model, fake_quant: FakeQuant):
    """Forward pre-hooks that fake-quantize the inputs of FP8 linears, and FP8 KV cache attention."""

    def quantize_input(scale: float):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]):
            return (qf.fp8_fake_quant(args[0], scale), *args[1:])

        return hook

    for name, scale in fake_quant.activation_scales.items():
        model.get_submodule(name).register_forward_pre_hook(quantize_input(scale))
    if fake_quant.kv_cache_scales:
        _register_fp8_kv_attention()
        for name, scale in fake_quant.kv_cache_scales.items():
            model.get_submodule(name).kv_cache_scale = scale
        model.config._attn_implementation = FP8_KV_ATTENTION
    return model


def checkpoint_state_dict(
    checkpoint_dir: Path, dtype: torch.dtype | None = None
) -> tuple[LlamaArchitecture, dict[str, torch.Tensor]]:
    """The HF state dict (names, merged shapes) of a TensorRT-LLM checkpoint of any TP/PP."""
    config = read_checkpoint_config(checkpoint_dir)
    arch = architecture_from_checkpoint(config)
    mapping = config.get("mapping", {})
    tp, pp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1))
    quantization = config.get("quantization") or {}
    quant_algo = quantization.get("quant_algo")
    if quant_algo not in LINEAR_READERS:
        raise CheckpointError(
            f"quant_algo {quant_algo!r} is not supported by the reference runtime "
            f"(known: {', '.join(str(key) for key in LINEAR_READERS)})."
        )
    read_linear = LINEAR_READERS[quant_algo]
    checkpoint_dtype = DTYPES[config.get("dtype", "bfloat16")]
    target = dtype or checkpoint_dtype
    parallel_embedding = bool(config.get("use_parallel_embedding", False))
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


def load_checkpoint(checkpoint_dir: Path | str, device: str = "cpu", dtype: torch.dtype | None = None):
    """A transformers LlamaForCausalLM (eval mode) holding the weights of a TensorRT-LLM checkpoint.

    dtype: compute dtype; default the checkpoint's `dtype`. Quantized weights are dequantized; FP8
    activations and an FP8 KV cache are fake-quantized with the checkpoint's static scales, so the model
    computes what the engine will.
    """
    arch, state = checkpoint_state_dict(Path(checkpoint_dir), dtype)
    return install_fake_quant(build_model(arch, state, device), checkpoint_fake_quant(Path(checkpoint_dir)))


# --- ModelOpt unified HF checkpoints (`swallow-trt convert --target pytorch`) -----------------------


def _unified_fp8(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """e4m3 weight times its scalar `weight_scale` (trtllm-pytorch-backend.md §2.2)."""
    return qf.fp8_dequantize(tensors["weight"], tensors["weight_scale"].reshape(()))


def _unified_awq(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """uint8 rows packed along `out`, per-group scales; times `pre_quant_scale` where the linear keeps one
    (o_proj, down_proj). For q/k/v and gate/up the scale lives in the RMSNorm weight in front, which the
    model applies as stored, so the dequantized weight alone reproduces (norm * prequant * x) @ W.T."""
    packed, scales = tensors["weight"], tensors["weight_scale"]
    group_size = packed.shape[1] // scales.shape[1]
    if group_size * scales.shape[1] != packed.shape[1]:
        raise CheckpointError(
            f"weight_scale {list(scales.shape)} does not divide the input {packed.shape[1]}."
        )
    weight = qf.int4_group_dequantize(qf.unpack_int4_rows(packed), scales, group_size)
    if "pre_quant_scale" in tensors:
        weight = weight * tensors["pre_quant_scale"].float().reshape(1, -1)
    return weight


# quant_algo (hf_quant_config.json) -> one linear's tensors (suffix -> tensor) into a dense weight
UNIFIED_LINEAR_READERS: dict[str | None, Callable[[dict[str, torch.Tensor]], torch.Tensor]] = {
    None: lambda tensors: tensors["weight"],
    "FP8": _unified_fp8,
    "W4A16_AWQ": _unified_awq,
}
UNIFIED_ACTIVATION_SCALE = {"FP8": "input_scale"}
# TensorRT-LLM's PyTorch backend runs an FP8 KV cache with a fixed scale of 1.0 and ignores the checkpoint's
# k_scale / v_scale (trtllm-pytorch-backend.md §2.3), so that is what the reference runtime simulates.
UNIFIED_KV_CACHE_SCALE = 1.0


def _unified_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint's safetensors (sharded through the index, or model.safetensors)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({directory / name for name in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} holds no *.safetensors.")
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise CheckpointError(f"{path} is listed in {index.name} but missing.")
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensors[name] = handle.get_tensor(name)
    return tensors


def unified_quantization(directory: Path) -> dict[str, Any]:
    """The checkpoint's quantization block: hf_quant_config.json (what TensorRT-LLM reads), {} if none."""
    return dict(read_modelopt_quantization(Path(directory)) or {})


def unified_state_dict(
    directory: Path, dtype: torch.dtype | None = None
) -> tuple[LlamaArchitecture, dict[str, torch.Tensor], FakeQuant]:
    """HF state dict (dequantized), architecture and run-time fake quant of a ModelOpt unified checkpoint."""
    from trt_build.source.hf_config import parse_hf_config

    directory = Path(directory)
    arch = parse_hf_config(
        json.loads((directory / "config.json").read_text()), str(directory / "config.json")
    )
    quantization = unified_quantization(directory)
    quant_algo = quantization.get("quant_algo")
    if quant_algo not in UNIFIED_LINEAR_READERS:
        raise CheckpointError(
            f"quant_algo {quant_algo!r} is not supported by the reference runtime "
            f"(known: {', '.join(str(key) for key in UNIFIED_LINEAR_READERS)})."
        )
    read_linear = UNIFIED_LINEAR_READERS[quant_algo]
    activation_suffix = UNIFIED_ACTIVATION_SCALE.get(quant_algo)
    kv_fp8 = quantization.get("kv_cache_quant_algo") == "FP8"
    target = dtype or DTYPES.get(arch.dtype, torch.bfloat16)
    raw = _unified_tensors(directory)
    state: dict[str, torch.Tensor] = {}
    activations: dict[str, float] = {}
    kv_cache: dict[str, float] = {}
    consumed: set[str] = set()
    for layer in range(arch.num_hidden_layers):
        for linear in LLAMA_LINEARS:
            prefix = f"model.layers.{layer}.{linear}"
            tensors = {name[len(prefix) + 1 :]: t for name, t in raw.items() if name.startswith(prefix + ".")}
            if "weight" not in tensors:
                raise CheckpointError(f"{prefix}.weight is missing from {directory}.")
            state[f"{prefix}.weight"] = read_linear(tensors).to(target).contiguous()
            consumed.update(f"{prefix}.{suffix}" for suffix in tensors)
            if activation_suffix:
                if activation_suffix not in tensors:
                    raise CheckpointError(f"{prefix}.{activation_suffix} is missing ({quant_algo} needs it).")
                activations[prefix] = float(tensors[activation_suffix].reshape(()))
        if kv_fp8:
            kv_cache[f"model.layers.{layer}.self_attn"] = UNIFIED_KV_CACHE_SCALE
    for name, tensor in raw.items():
        if name not in consumed:
            state[name] = tensor.to(target).contiguous()
    return arch, state, FakeQuant(activations, kv_cache)


def load_unified_checkpoint(directory: Path | str, device: str = "cpu", dtype: torch.dtype | None = None):
    """A transformers LlamaForCausalLM (eval mode) holding a ModelOpt unified HF checkpoint, dequantized,
    with FP8 activations fake-quantized by their static `input_scale` and an FP8 KV cache at the scale the
    PyTorch backend uses (1.0): the model computes what TensorRT-LLM's PyTorch backend will.

    dtype: compute dtype; default the checkpoint's config dtype.
    """
    arch, state, fake_quant = unified_state_dict(Path(directory), dtype)
    return install_fake_quant(build_model(arch, state, device), fake_quant)
