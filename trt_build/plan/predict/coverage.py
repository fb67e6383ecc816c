"""What AIConfigurator 0.12.0's measured data covers (docs/upstream-2026.md §6.1): a configuration outside
it gets a plain reason and the memory plan only, never a number from data that does not exist."""

from __future__ import annotations

from trt_build.common.gpus import GpuProfile
from trt_build.quant.schemes import QuantScheme

# our GPU profile -> AIConfigurator system with TensorRT-LLM 1.3 data
SYSTEMS = {"h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm", "l40s": "l40s"}
_A100 = "the predictor has only TensorRT-LLM 1.0 data for A100 (none for 1.3)"
NOT_COVERED = {"a100-80g": _A100, "a100-40g": _A100}
QUANTS = ("none", "fp8")  # weight formats with measured GEMMs on every system above
QUANT_GAPS = {
    "int4_awq": "INT4-AWQ has no measured GEMM data for TensorRT-LLM on Hopper",
    "nvfp4": "NVFP4 predictions are not validated against published figures here",
}


def out_of_data(gpu: GpuProfile, quant: QuantScheme, fp8_kv: bool) -> str | None:
    """Why the predictor cannot estimate this configuration, or None when its data covers it."""
    if gpu.name not in SYSTEMS:
        return NOT_COVERED.get(
            gpu.name, f"{gpu.name} is not among the predictor's systems ({', '.join(SYSTEMS)})"
        )
    if quant.name not in QUANTS:
        return QUANT_GAPS.get(quant.name, f"--quant {quant.name} has no measured GEMM data in the predictor")
    if (quant.name == "fp8" or fp8_kv) and not gpu.fp8:
        return f"FP8 needs SM >= 89; {gpu.name} is SM {gpu.sm}"
    return None
