"""NVIDIA's published TensorRT-LLM max-throughput figures for Llama 3.1 / 3.3, as one table.

Source: TensorRT-LLM perf-overview v1.0 (PyTorch backend, ModelOpt FP8 checkpoints, `trtllm-bench`, total
output tokens/s over all GPUs), docs/metrics.md §3.2. The 70B rows are Llama 3.3 70B, the same architecture
and size as Llama 3.1 70B (and Swallow 70B). Predictions (`plan --predict`) and measurements (`report`) are
put beside these; a figure not in the table is "none published", never an interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "TensorRT-LLM perf-overview v1.0, PyTorch backend, FP8 (docs/metrics.md §3.2)"


@dataclass(frozen=True)
class PublishedCase:
    size: str  # "8b" | "70b"
    gpu: str  # GPU profile name (trt_build/common/gpus.py)
    quant: str  # a --quant value
    tp: int
    isl: int
    osl: int


_ISL_OSL = (
    (128, 128),
    (128, 2048),
    (500, 2000),
    (1000, 1000),
    (2048, 128),
    (2048, 2048),
    (5000, 500),
    (20000, 2000),
)
# column -> its figures in _ISL_OSL order, output tokens/s over all GPUs
_COLUMNS: dict[tuple[str, str, int], tuple[int, ...]] = {
    ("8b", "h200", 1): (27_911, 26_221, 20_770, 17_744, 3_538, 12_194, 3_902, 1_804),
    ("8b", "h100", 1): (28_312, 22_714, 17_660, 15_220, 3_450, 9_305, 3_459, 1_351),
    ("70b", "h200", 1): (3_803, 4_336, 3_666, 2_909, 442, 2_003, 566, 283),
    ("70b", "h100", 2): (6_378, 6_651, 5_222, 4_205, 762, 3_082, 898, 437),
}

PUBLISHED_TOKENS_PER_S: dict[PublishedCase, int] = {
    PublishedCase(size, gpu, "fp8", tp, isl, osl): figure
    for (size, gpu, tp), figures in _COLUMNS.items()
    for (isl, osl), figure in zip(_ISL_OSL, figures, strict=True)
}


def published_tokens_per_s(case: PublishedCase) -> int | None:
    """The published output tokens/s (all GPUs) for `case`, or None where NVIDIA published none."""
    return PUBLISHED_TOKENS_PER_S.get(case)
