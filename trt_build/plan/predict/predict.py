"""`plan --predict`: what one planned configuration serves, as AIConfigurator estimates it.

At a given concurrency the batch is that concurrency; without one, the max-throughput point: the largest
batch whose KV cache fits (the sweep NVIDIA's published max-throughput figures correspond to,
docs/upstream-2026.md §6.3). Outside the predictor's data, or without its venv, a Prediction carries the
reason and no numbers: the plan above it is the memory plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.plan.deployment import PREDICTED_METRICS
from trt_build.plan.memory import Scenario
from trt_build.plan.predict.bridge import HOW_TO_ADD, Answer, Query, ask
from trt_build.plan.predict.coverage import out_of_data


@dataclass
class Prediction:
    """Estimates for one configuration, or why there are none (`unavailable`)."""

    isl: int
    osl: int
    concurrency: int | None  # None: max throughput
    metrics: dict[str, Any] = field(default_factory=dict)  # PREDICTED_METRICS + batch, kv_fits, memory_gb
    predictor: dict[str, str] = field(default_factory=dict)
    unavailable: str = ""  # why there are no estimates
    fix: str = ""
    note: str = ""  # what the plan must change to reach the estimate


def scenario_query(s: Scenario, isl: int, osl: int, points: tuple[dict[str, Any], ...]) -> Query:
    return Query(s.arch, s.gpu, s.quant, s.kv_cache_quant_algo == "FP8", isl, osl, points)


def predicted_metrics(point: dict[str, Any]) -> dict[str, float]:
    """Exactly the PREDICTED_METRICS keys of a worker point."""
    return {key: float(point[key]) for key in PREDICTED_METRICS}


def predict(s: Scenario, isl: int, osl: int, concurrency: int | None = None) -> Prediction:
    """The estimate for scenario `s` (its TP x PP on one worker) at `concurrency`, or at max throughput."""
    prediction = Prediction(isl, osl, concurrency)
    reason = out_of_data(s.gpu, s.quant, s.kv_cache_quant_algo == "FP8")
    if reason:
        prediction.unavailable = f"outside the predictor's data: {reason}"
        prediction.fix = "The memory plan above still holds; measure on the GPU (`swallow-trt bench`)."
        return prediction
    point = {"mode": "agg", "tp": s.tp, "pp": s.pp, "batch": concurrency}
    try:
        (answer,) = ask([scenario_query(s, isl, osl, (point,))])
    except SwallowTrtError as error:
        prediction.unavailable, prediction.fix = error.problem, error.fix or HOW_TO_ADD
        return prediction
    fill(prediction, answer, answer.points[0])
    batch = prediction.metrics.get("batch", 0)
    if batch > s.max_batch_size:
        prediction.note = (
            f"batch {batch} is above this plan's --max-batch-size {s.max_batch_size}: plan and build with "
            f"--max-batch-size {batch} to reach it."
        )
    return prediction


def fill(prediction: Prediction, answer: Answer, point: dict[str, Any]) -> Prediction:
    prediction.predictor = answer.predictor()
    if "error" in point:
        prediction.unavailable = f"the predictor says: {point['error']}"
    else:
        prediction.metrics = point
    return prediction
