"""The metrics the CPU engines report, under the C++ tensorrtllm backend's family names (docs/triton.md §7).

`nv_trt_llm_request_metrics{request_type="active"}`: requests generating now;
`nv_llm_input_token_len` / `nv_llm_output_token_len`: tokens per finished request (a cancelled one
included), histograms with the backend's buckets. So tools and tests read the same families from the
CPU engines as from the GPU engine. Runs inside tritonserver only (it needs the Python backend).
"""

from __future__ import annotations

import contextlib
import threading

import triton_python_backend_utils as pb_utils

TOKEN_BUCKETS = [10, 50, 100, 500, 1000]  # the C++ backend's buckets


class EngineMetrics:
    """One model's metrics; `generating` wraps each request's generation."""

    def __init__(self, model: str, version: str):
        labels = {"model": model, "version": str(version)}
        family = pb_utils.MetricFamily
        # a family must outlive its metrics, so both are kept
        requests = family("nv_trt_llm_request_metrics", "TRT-LLM request metrics", family.GAUGE)
        self.families = [requests]
        self.active = requests.Metric(labels={**labels, "request_type": "active"})
        self.lengths = {}
        for kind, metric_type in (("input", "total_input_tokens"), ("output", "total_output_tokens")):
            histogram = family(
                f"nv_llm_{kind}_token_len", f"TRT-LLM response {kind} token length", family.HISTOGRAM
            )
            self.families.append(histogram)
            self.lengths[kind] = histogram.Metric(
                labels={**labels, "response_metric_type": metric_type}, buckets=TOKEN_BUCKETS
            )
        self.lock = threading.Lock()
        self.running = 0

    @contextlib.contextmanager
    def generating(self, input_tokens: int, generated: list[int]):
        """Count a request as active while it generates; record its token counts when it ends."""
        with self.lock:
            self.running += 1
            self.active.set(self.running)
        try:
            yield
        finally:
            with self.lock:
                self.lengths["input"].observe(input_tokens)
                self.lengths["output"].observe(len(generated))
                self.running -= 1
                self.active.set(self.running)
