"""Every `--quant` value and every `--kv-cache-dtype`, with all that each means to every stage: one row each.

Convert, calibration, the ModelOpt export, the planner, the memory model and the build rules read their
facts about a quantization from here and nowhere else. The table is torch-free so the planner can read it
without importing torch; the tensor math is in `numerics.py`, and what a linear becomes in each checkpoint
format is the format's business (`formats/trtllm_checkpoint.py`, `formats/modelopt_checkpoint.py`).

Byte counts are what the *engine* holds on the GPU: trtllm-build casts AWQ group scales and weight-only
per-channel scales to the model dtype (bf16), FP8 scales are fp32 scalars, lm_head and the embedding stay
bf16 (docs/trtllm-checkpoint.md §4).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from trt_build.common.errors import SwallowTrtError

BF16_BYTES = 2
FP32_BYTES = 4
AWQ_GROUP_SIZE = 128  # the AWQ group along a linear's input: TensorRT-LLM's and ModelOpt's default

ENGINE, PYTORCH = "engine", "pytorch"  # the convert targets (common/targets.py)


@dataclass(frozen=True)
class QuantScheme:
    name: str  # what users type: --quant / QUANT=
    quant_algo: str | None  # `quant_algo` in the TRT-LLM config.json and ModelOpt hf_quant_config.json
    description: str
    weight_bits: int  # bits per element of a quantized linear weight
    needs_fp8: bool  # FP8 tensor cores (SM >= 89)
    int_weights: bool  # INT8/INT4 weights: trtllm-build refuses them on SM 100..119
    # calibration algorithms: "max" (input / weight / KV amax) is cheap and always collected, so any scheme
    # can add an FP8 KV cache; "awq" adds the pre-quant scale search.
    calibration: tuple[str, ...] = ("max",)
    needs_data: bool = False  # calibrated even without an FP8 KV cache (FP8 activations, AWQ)
    group_size: int | None = None  # grouped along the input dimension (AWQ)
    convert_targets: tuple[str, ...] = (ENGINE,)  # which `convert --target`s write it
    # the TRT-LLM config.json `quantization` keys beyond quant_algo / kv_cache_quant_algo (docs/trtllm-checkpoint.md §1.3)
    trtllm_quantization: dict[str, Any] = field(default_factory=dict)
    # hf_quant_config.json `quantization` keys beyond quant_algo / kv_cache_quant_algo / exclude_modules
    modelopt_quantization: dict[str, Any] = field(default_factory=dict)
    modelopt_config_groups: bool = False  # config.json quantization_config carries `config_groups` (FP8)
    pytorch_backend: bool = True  # the PyTorch backend deploys a checkpoint of this quant_algo

    def linear_bytes(self, out_features: int, in_features: int) -> int:
        """GPU bytes of one linear layer's weight plus its scaling tensors."""
        elements = out_features * in_features
        weight = elements * self.weight_bits // 8
        if self.quant_algo is None:
            return weight
        if self.quant_algo == "FP8":  # weights_scaling_factor + activation_scaling_factor, fp32 [1] each
            return weight + 2 * FP32_BYTES
        if self.quant_algo == "NVFP4":  # an fp8 scale per 16 inputs and two fp32 scalars
            return weight + elements // 16 + 2 * FP32_BYTES
        if self.group_size:  # AWQ: group scales [in/group, out] + prequant [in], both bf16
            return (
                weight
                + (in_features // self.group_size) * out_features * BF16_BYTES
                + in_features * BF16_BYTES
            )
        return weight + out_features * BF16_BYTES  # weight-only: per_channel_scale [out] bf16

    def trtllm_block(self, group_size: int | None = None, kv_cache_dtype: str = "auto") -> dict[str, Any]:
        """The TRT-LLM checkpoint config.json `quantization` block for these options."""
        block: dict[str, Any] = {"quant_algo": self.quant_algo, "kv_cache_quant_algo": None}
        block.update(copy.deepcopy(self.trtllm_quantization))
        if "group_size" in block and group_size is not None:
            block["group_size"] = group_size
        block["kv_cache_quant_algo"] = kv_cache_dtype_named(kv_cache_dtype).quant_algo
        return block


SCHEMES: dict[str, QuantScheme] = {
    s.name: s
    for s in (
        QuantScheme(
            "none",
            None,
            "bf16 weights",
            16,
            needs_fp8=False,
            int_weights=False,
        ),
        QuantScheme(
            "fp8",
            "FP8",
            "FP8 e4m3 weights and activations, per-tensor scales",
            8,
            needs_fp8=True,
            int_weights=False,
            needs_data=True,
            convert_targets=(ENGINE, PYTORCH),
            trtllm_quantization={"exclude_modules": ["lm_head"]},
            modelopt_config_groups=True,
        ),
        QuantScheme(
            "int4_awq",
            "W4A16_AWQ",
            "INT4 AWQ weights, group 128, bf16 activations",
            4,
            needs_fp8=False,
            int_weights=True,
            calibration=("max", "awq"),
            needs_data=True,
            group_size=AWQ_GROUP_SIZE,
            convert_targets=(ENGINE, PYTORCH),
            trtllm_quantization={
                "group_size": AWQ_GROUP_SIZE,
                "has_zero_point": False,
                "pre_quant_scale": True,
                "exclude_modules": ["lm_head"],
            },
            modelopt_quantization={
                "group_size": AWQ_GROUP_SIZE,
                "has_zero_point": False,
                "pre_quant_scale": True,
            },
        ),
        # Weight-only: the engine target writes bf16 weights and trtllm-build quantizes them (docs/trtllm-checkpoint.md §4.3);
        # exclude_modules must stay null there.
        QuantScheme(
            "int8_wo",
            "W8A16",
            "INT8 weight-only, per-channel scales",
            8,
            needs_fp8=False,
            int_weights=True,
            trtllm_quantization={"exclude_modules": None},
            pytorch_backend=False,
        ),
        QuantScheme(
            "int4_wo",
            "W4A16",
            "INT4 weight-only, per-channel scales",
            4,
            needs_fp8=False,
            int_weights=True,
            trtllm_quantization={"exclude_modules": None},
            pytorch_backend=False,
        ),
        # NVFP4: a ModelOpt checkpoint the PyTorch backend runs on Blackwell; planned, not written by convert.
        QuantScheme(
            "nvfp4",
            "NVFP4",
            "NVFP4 weights and activations, block 16 (Blackwell)",
            4,
            needs_fp8=True,
            int_weights=False,
            convert_targets=(),
        ),
    )
}


def schemes_for(target: str) -> dict[str, QuantScheme]:
    """The schemes `convert --target TARGET` writes (--quant none included for the engine target)."""
    return {name: s for name, s in SCHEMES.items() if target in s.convert_targets or name == "none"}


CALIBRATED = schemes_for(ENGINE)  # every scheme can be calibrated (for an FP8 KV cache at least)


def scheme_named(name: str) -> QuantScheme:
    if name not in SCHEMES:
        raise SwallowTrtError(f"Unknown quantization {name!r}.", f"Choose one of {', '.join(SCHEMES)}.")
    return SCHEMES[name]


def pytorch_backend_schemes() -> dict[str, QuantScheme]:
    """The schemes whose checkpoints the PyTorch backend deploys (a ModelOpt checkpoint or the HF one)."""
    return {name: s for name, s in SCHEMES.items() if s.pytorch_backend}


def scheme_for_quant_algo(
    quant_algo: str | None, source: str = "config.json", schemes: dict[str, QuantScheme] | None = None
) -> QuantScheme:
    """The scheme a checkpoint's quant_algo means (among `schemes`, default those the engine target
    writes), or a clear error for one swallow-trt does not know."""
    schemes = schemes_for(ENGINE) if schemes is None else schemes
    for scheme in schemes.values():
        if scheme.quant_algo == quant_algo:
            return scheme
    known = ", ".join(str(s.quant_algo) for s in schemes.values())
    raise SwallowTrtError(
        f"{source}: quant_algo {quant_algo!r} is not one swallow-trt plans or builds (known: {known}).",
        "Convert with `swallow-trt convert --quant none|fp8|int4_awq|int8_wo|int4_wo`, or run trtllm-build yourself.",
    )


def needs_calibration(quant: str, kv_cache_dtype: str = "auto") -> bool:
    """Weight-only schemes are closed-form; FP8 activations, AWQ and an FP8 KV cache need data."""
    return SCHEMES[quant].needs_data or kv_cache_dtype_named(kv_cache_dtype).quant_algo is not None


# ---------------------------------------------------------------- the KV cache


@dataclass(frozen=True)
class KvCacheDtype:
    name: str  # --kv-cache-dtype / KV_CACHE_DTYPE=
    quant_algo: str | None  # kv_cache_quant_algo (None: the model dtype)
    bytes: int  # per element on the GPU


KV_CACHE_DTYPES: dict[str, KvCacheDtype] = {
    kv.name: kv for kv in (KvCacheDtype("auto", None, BF16_BYTES), KvCacheDtype("fp8", "FP8", 1))
}


def kv_cache_dtype_named(name: str) -> KvCacheDtype:
    if name not in KV_CACHE_DTYPES:
        raise SwallowTrtError(
            f"--kv-cache-dtype {name!r} is not known.", f"Choose one of {', '.join(KV_CACHE_DTYPES)}."
        )
    return KV_CACHE_DTYPES[name]


def kv_cache_dtype_for(quant_algo: str | None) -> KvCacheDtype:
    """The --kv-cache-dtype of a checkpoint's kv_cache_quant_algo (auto for one that is not known)."""
    return next(
        (kv for kv in KV_CACHE_DTYPES.values() if kv.quant_algo == quant_algo), KV_CACHE_DTYPES["auto"]
    )
