"""Run-time quantization a checkpoint's engine applies beyond its weights, simulated on a transformers model:
FP8 inputs of linears with their static scales, and an FP8 KV cache (K/V rounded through e4m3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trt_build.quant import numerics as qf

FP8_KV_ATTENTION = "swallow_trt_fp8_kv_sdpa"


@dataclass(frozen=True)
class FakeQuant:
    """What to fake-quantize, keyed by HF module name."""

    activation_scales: dict[str, float]  # model.layers.{L}.self_attn.q_proj -> FP8 input scale
    kv_cache_scales: dict[str, float]  # model.layers.{L}.self_attn -> FP8 KV cache scale

    def __bool__(self) -> bool:
        return bool(self.activation_scales or self.kv_cache_scales)


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
