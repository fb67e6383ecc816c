"""How close a converted checkpoint must come to its source, by precision: the verification thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    max_abs_logit_diff: float | None  # None: reported, not gated
    min_top1_agreement: float
    max_ppl_rel_diff: float
    note: str
    min_cosine_similarity: float = 0.0  # mean over positions of cos(logits_source, logits_checkpoint)


# Precision of the checkpoint -> what it must reach against the source model, in every language of the
# texts (ja and en are checked separately). "exact": unquantized in the source's own dtype, which must
# give bit-identical logits. Other dtypes: the weights convert exactly or nearly (bf16 -> fp16 is exact
# but for magnitudes below 2^-24), so the differences come from the activations being rounded
# differently (about 2^-9 relative per op for fp16 against 2^-8 for bf16). Measured bf16 -> fp16 on the
# tiny preset (logits of magnitude ~1): max |diff| 0.0049, top-1 agreement 0.974 (random weights leave
# many near-ties), perplexity +0.006%. The absolute bound leaves headroom for real models, whose logits
# reach ~30; top-1 agreement and perplexity are the sharper tests there.
THRESHOLDS: dict[str, Thresholds] = {
    "exact": Thresholds(0.0, 1.0, 0.0, "same dtype, unquantized: logits must be bit-identical", 0.9999),
    "float16": Thresholds(1.0, 0.90, 0.02, "bf16/fp32 source in fp16: activation rounding only", 0.999),
    "bfloat16": Thresholds(2.0, 0.85, 0.03, "fp16/fp32 source in bf16: activation rounding only", 0.999),
    "float32": Thresholds(1.0, 0.90, 0.02, "bf16/fp16 source in fp32: activation rounding only", 0.999),
}
# Quantized precisions: quant_algo, "+FP8_KV" with an FP8 KV cache ("FP8_KV" alone over unquantized
# weights). Cosine similarity and top-1 bounds come from the TINY model (random weights, 2 layers, hidden
# 64), measured with `swallow-trt verify --json` on the held-out eval set after `convert --calib-size 16
# --calib-seq-len 64` (AWQ --group-size 16), TP1 and TP2, identical to 4 digits. The cosine bound allows
# about 3x the measured loss (1 - cosine): FP8 5.7e-4, FP8+KV 6.9e-4, AWQ 2.5e-3, W8A16 4e-5, W4A16 4.8e-3,
# FP8 KV alone 1.2e-4 (worse language). Top-1 allows about 0.1 below the measured 0.76-0.98 (random
# weights leave many near-ties). The tiny model's perplexity hardly moves (its distribution is nearly
# flat, +0.2 % at most), so the perplexity bounds are those a real model may lose (docs/metrics.md §5.1:
# FP8 ~lossless, INT4 2-6 % MMLU on 8B), not tiny figures. max |dlogit| grows with the logit scale of a
# real model, so it is reported but not gated (None). Real-model runs should confirm these bounds.
QUANTIZED_THRESHOLDS: dict[str, tuple[float, float, float, str]] = {
    # key: (min cosine, min top-1, max ppl rel diff, note)
    "FP8": (0.998, 0.80, 0.02, "FP8 e4m3 weights and activations, per-tensor static scales"),
    "FP8+FP8_KV": (0.997, 0.80, 0.03, "FP8 weights and activations, FP8 KV cache"),
    "W4A16_AWQ": (0.992, 0.70, 0.08, "INT4 AWQ weights (group-wise), bf16 activations"),
    "W4A16_AWQ+FP8_KV": (0.992, 0.70, 0.09, "INT4 AWQ weights, FP8 KV cache"),
    "W8A16": (0.9998, 0.85, 0.01, "INT8 weight-only per channel (trtllm-build amax/128)"),
    "W8A16+FP8_KV": (0.9995, 0.85, 0.02, "INT8 weight-only, FP8 KV cache"),
    "W4A16": (0.985, 0.65, 0.12, "INT4 weight-only per channel (trtllm-build amax/8)"),
    "W4A16+FP8_KV": (0.985, 0.65, 0.13, "INT4 weight-only, FP8 KV cache"),
    "FP8_KV": (0.9995, 0.85, 0.01, "unquantized weights, FP8 KV cache"),
}
THRESHOLDS.update(
    {
        key: Thresholds(None, top1, ppl, note + " (cosine/top-1 bounds from the tiny model)", cosine)
        for key, (cosine, top1, ppl, note) in QUANTIZED_THRESHOLDS.items()
    }
)


def is_quantized(checkpoint_config: dict[str, Any]) -> bool:
    quantization = checkpoint_config.get("quantization") or {}
    return bool(quantization.get("quant_algo") or quantization.get("kv_cache_quant_algo"))


def precision_key(checkpoint_config: dict[str, Any], source_dtype: str) -> str:
    """The THRESHOLDS key of a checkpoint: its quant_algo when quantized (+FP8_KV with an FP8 KV
    cache), else 'exact' or its dtype."""
    quantization = checkpoint_config.get("quantization") or {}
    quant_algo, kv = quantization.get("quant_algo"), quantization.get("kv_cache_quant_algo")
    if quant_algo:
        return str(quant_algo) + (f"+{kv}_KV" if kv else "")
    if kv:
        return f"{kv}_KV"
    dtype = str(checkpoint_config.get("dtype", "bfloat16"))
    return "exact" if dtype == source_dtype else dtype
