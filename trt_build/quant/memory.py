"""Quantization formats for planning and building: CLI name, checkpoint `quant_algo`, GPU bytes per weight.

Facts from ../shared/reference/trtllm-checkpoint.md sections 1.3 and 4. The byte counts are what the
*engine* holds on the GPU: trtllm-build casts AWQ group scales and weight-only per-channel scales to
the model dtype (bf16), FP8 scales are fp32 scalars. lm_head and the embedding always stay bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

BF16_BYTES = 2
FP32_BYTES = 4
AWQ_GROUP_SIZE = 128


@dataclass(frozen=True)
class QuantFormat:
    name: str  # what users type: --quant / QUANT=
    quant_algo: str | None  # checkpoint config.json quantization.quant_algo
    weight_bits: int  # bits per element of a quantized linear weight
    needs_fp8: bool  # FP8 tensor cores (SM >= 89)
    int_weights: bool  # INT8/INT4 weights: trtllm-build refuses them on SM 100..119
    description: str

    def linear_bytes(self, out_features: int, in_features: int) -> int:
        """GPU bytes of one linear layer's weight plus its scaling tensors in the engine."""
        elements = out_features * in_features
        weight = elements * self.weight_bits // 8
        if self.quant_algo is None:
            return weight
        if self.quant_algo == "FP8":  # weights_scaling_factor + activation_scaling_factor, fp32 [1] each
            return weight + 2 * FP32_BYTES
        if self.quant_algo == "W4A16_AWQ":  # group scales [in/128, out] + prequant [in], both bf16
            return (
                weight
                + (in_features // AWQ_GROUP_SIZE) * out_features * BF16_BYTES
                + in_features * BF16_BYTES
            )
        return weight + out_features * BF16_BYTES  # weight-only: per_channel_scale [out] bf16


QUANT_FORMATS: dict[str, QuantFormat] = {
    q.name: q
    for q in (
        QuantFormat("none", None, 16, False, False, "bf16 weights"),
        QuantFormat("fp8", "FP8", 8, True, False, "FP8 e4m3 weights and activations, per-tensor scales"),
        QuantFormat("int4_awq", "W4A16_AWQ", 4, False, True, "INT4 AWQ weights, group 128, bf16 activations"),
        QuantFormat("int8_wo", "W8A16", 8, False, True, "INT8 weight-only, per-channel scales"),
        QuantFormat("int4_wo", "W4A16", 4, False, True, "INT4 weight-only, per-channel scales"),
    )
}
KV_CACHE_DTYPES = {"auto": None, "fp8": "FP8"}  # --kv-cache-dtype -> kv_cache_quant_algo
KV_CACHE_BYTES = {None: BF16_BYTES, "FP8": 1}


def quant_format(name: str) -> QuantFormat:
    if name not in QUANT_FORMATS:
        raise click.ClickException(
            f"Unknown quantization {name!r}; choose one of {', '.join(QUANT_FORMATS)}."
        )
    return QUANT_FORMATS[name]


def format_for_quant_algo(quant_algo: str | None, source: str = "config.json") -> QuantFormat:
    """The format a checkpoint's quant_algo means, or a ClickException for one swallow-trt does not build."""
    for fmt in QUANT_FORMATS.values():
        if fmt.quant_algo == quant_algo:
            return fmt
    known = ", ".join(str(f.quant_algo) for f in QUANT_FORMATS.values())
    raise click.ClickException(
        f"{source}: quant_algo {quant_algo!r} is not one swallow-trt plans or builds (known: {known}). "
        "Convert with `swallow-trt convert --quant none|fp8|int4_awq|int8_wo|int4_wo`, or run trtllm-build yourself."
    )
