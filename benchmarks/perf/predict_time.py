"""How long `plan --predict` and `plan --slo` take here: one max-throughput prediction (8B FP8 on an H200,
1000/1000) and one SLO search (70B FP8 on 8 x H200, TTFT <= 500 ms, TPOT <= 30 ms, 1000/500), each one
predictor call (its kernel database load included). Target: under 30 s each on a 2-core machine.

    make predictor && .venv/bin/python -m benchmarks.perf.predict_time
"""

from __future__ import annotations

import time

from trt_build.plan.planner import PlanRequest, plan_for
from trt_build.plan.predict.predict import predict
from trt_build.plan.predict.slo import search


def scenario(model: str):
    request = PlanRequest(model, "h200", quant="fp8", kv_cache_dtype="fp8", tp=1, target="pytorch")
    return plan_for(request).scenario


def main() -> None:
    start = time.perf_counter()
    prediction = predict(scenario("Llama-3.1-Swallow-8B-Instruct-v0.5"), 1000, 1000)
    took = time.perf_counter() - start
    if prediction.unavailable:
        raise SystemExit(f"no prediction: {prediction.unavailable} {prediction.fix}")
    print(f"one prediction (8B FP8, H200, max throughput): {took:.1f} s")
    start = time.perf_counter()
    bounds = {"ttft_ms": 500.0, "tpot_ms": 30.0}
    result = search(scenario("Llama-3.3-Swallow-70B-Instruct-v0.4"), 1000, 500, bounds, gpus=8, users=None)
    took = time.perf_counter() - start
    print(f"one SLO search (70B FP8, 8 x H200, {len(result.all_units)} units): {took:.1f} s")


if __name__ == "__main__":
    main()
