"""`swallow-trt bench` as one library call: check what both modes share, then run the sweep against a
server (benchmarks/served) or, with an engine directory, through trtllm-bench (benchmarks/engine_level)."""

from __future__ import annotations

from benchmarks.engine_level.trtllm_bench import run_trtllm_bench
from benchmarks.load.levels import parse_levels
from benchmarks.metrics.summary import parse_goodput
from benchmarks.options import BenchOptions
from benchmarks.served.sweep import run_served
from trt_build.common.errors import UsageError


def run_bench(options: BenchOptions) -> str:
    """Run the benchmark and write its results directory; returns the closing line that says where."""
    levels = parse_levels(options.concurrency, options.request_rate, options.max_concurrency)
    if options.num_requests and options.duration_s:
        raise UsageError("Give either --num-requests or --duration, not both.")
    if options.arrival == "gamma" and not options.burstiness > 0:
        raise UsageError("--burstiness must be > 0.")
    slo_ms = parse_goodput(options.goodput_spec)
    if options.engine_dir is not None:
        return run_trtllm_bench(options, levels, slo_ms)
    return run_served(options, levels, slo_ms)
