"""`plan --slo`: which deployment meets a latency SLO best, searched over AIConfigurator's estimates.

A unit is one aggregated worker (TP, batch) or one disaggregated group (prefill workers x TP, decode workers
x TP, decode batch), at most GPUS_PER_NODE GPUs (or --gpus). With --gpus G a deployment is as many replicas
of a unit as fit in G and the best one serves the most tokens/s; with --users N it is as many replicas as
serve N concurrent requests and the best one needs the fewest GPUs (then the most tokens/s per GPU). Only
units whose KV cache holds their batch and whose TTFT and TPOT meet the SLO qualify. The choice carries
exactly the batch, TP, roles and KV share that were modelled (plan/deployment.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trt_build.build.limits import GPUS_PER_NODE
from trt_build.common.errors import SwallowTrtError, UsageError
from trt_build.parallel.rules import tp_fits
from trt_build.plan.deployment import DeploymentChoice, RoleChoice
from trt_build.plan.memory import Scenario
from trt_build.plan.predict.bridge import Answer, ask
from trt_build.plan.predict.coverage import out_of_data
from trt_build.plan.predict.predict import predicted_metrics, scenario_query
from trt_build.quant.schemes import kv_cache_dtype_for

SLO_KEYS = {"ttft": "ttft_ms", "tpot": "tpot_ms"}  # --slo key -> the metric it bounds (ms)
TPS = (1, 2, 4, 8)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # the CLI's sweep caps batch at 512 too
PREFILL_BATCH = 1  # one prompt per prefill iteration: the TTFT-friendly prefill worker
SHOWN = 4  # configurations printed side by side


def parse_slo(text: str) -> dict[str, float]:
    """`ttft=500,tpot=30` -> {"ttft_ms": 500, "tpot_ms": 30}; a bad part is a UsageError naming it."""
    bounds: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if key not in SLO_KEYS or not number > 0:
            raise UsageError(
                f"--slo part {part.strip()!r} is not KEY=MILLISECONDS with KEY one of {', '.join(SLO_KEYS)} "
                "and a positive number.",
                "Write e.g. --slo ttft=500,tpot=30.",
            )
        bounds[SLO_KEYS[key]] = number
    return bounds


@dataclass(frozen=True)
class Candidate:
    """A unit's estimate, replicated `replicas` times."""

    point: dict[str, Any]  # worker POINT
    metrics: dict[str, Any]  # worker METRICS for one unit
    unit_gpus: int
    replicas: int = 1

    @property
    def mode(self) -> str:
        return self.point["mode"]

    @property
    def gpus(self) -> int:
        return self.unit_gpus * self.replicas

    def predicted(self) -> dict[str, float]:
        """PREDICTED_METRICS for the whole deployment (rates and concurrency scale with the replicas)."""
        unit = predicted_metrics(self.metrics)
        scaled = ("tokens_per_s", "requests_per_s", "concurrency")
        return {k: v * self.replicas if k in scaled else v for k, v in unit.items()}

    def roles(self, isl: int) -> tuple[RoleChoice, ...]:
        """The workers as deployed: max_num_tokens covers the context budget modelled for them."""
        p, r = self.point, self.replicas
        if self.mode == "agg":
            batch = p["batch"]
            return (RoleChoice("agg", r, p["tp"], 1, batch, isl + batch),)
        prefill, decode = p["prefill"], p["decode"]
        return (
            RoleChoice(
                "prefill", r * prefill["workers"], prefill["tp"], 1, prefill["batch"], isl * prefill["batch"]
            ),
            RoleChoice("decode", r * decode["workers"], decode["tp"], 1, decode["batch"], decode["batch"]),
        )

    def label(self) -> str:
        p = self.point
        if self.mode == "agg":
            return f"agg {self.replicas} x TP{p['tp']} bs{p['batch']}"
        pre, dec = p["prefill"], p["decode"]
        unit = f"{pre['workers']}P TP{pre['tp']} + {dec['workers']}D TP{dec['tp']} bs{dec['batch']}"
        return f"disagg {self.replicas} x ({unit})"


@dataclass
class SearchResult:
    bounds: dict[str, float]
    all_units: list[Candidate]  # every unit with an estimate whose KV fits (for the Pareto front)
    ranked: list[Candidate]  # deployments meeting the SLO, best first
    answer: Answer
    gpus: int | None
    users: int | None

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None


def unit_points(s: Scenario, max_gpus: int) -> list[tuple[dict[str, Any], int]]:
    """(worker POINT, GPUs) for every unit of at most `max_gpus` GPUs that is not replicas of a smaller one."""
    tps = [t for t in TPS if tp_fits(s.arch, t) and t <= max_gpus]
    units: list[tuple[dict[str, Any], int]] = [
        ({"mode": "agg", "tp": t, "pp": 1, "batch": b}, t) for t in tps for b in BATCHES
    ]
    for pt in tps:
        for dt in tps:
            for pw in range(1, max_gpus // pt + 1):
                for dw in range(1, (max_gpus - pw * pt) // dt + 1):
                    if math.gcd(pw, dw) > 1:  # replicas of a smaller unit, which replicas cover
                        continue
                    for b in BATCHES:
                        point = {
                            "mode": "disagg",
                            "prefill": {"tp": pt, "workers": pw, "batch": PREFILL_BATCH},
                            "decode": {"tp": dt, "workers": dw, "batch": b},
                        }
                        units.append((point, pw * pt + dw * dt))
    return units


def _meets(metrics: dict[str, Any], bounds: dict[str, float]) -> bool:
    return all(metrics[key] <= bound for key, bound in bounds.items())


def pareto_front(units: list[Candidate]) -> list[Candidate]:
    """Units no other beats on both tokens/s per user and tokens/s per GPU, by tokens/s per user."""
    ordered = sorted(
        units, key=lambda c: (-c.metrics["tokens_per_s_per_user"], -c.metrics["tokens_per_s_per_gpu"])
    )
    front, best_per_gpu = [], -1.0
    for unit in ordered:
        if unit.metrics["tokens_per_s_per_gpu"] > best_per_gpu:
            front.append(unit)
            best_per_gpu = unit.metrics["tokens_per_s_per_gpu"]
    return front


def search(
    s: Scenario, isl: int, osl: int, bounds: dict[str, float], gpus: int | None, users: int | None
) -> SearchResult:
    """The deployments of scenario `s`'s model, format and GPU that meet `bounds`, best first."""
    if (gpus is None) == (users is None):
        raise UsageError("Give --slo with exactly one of --gpus N or --users N.")
    reason = out_of_data(s.gpu, s.quant, s.kv_cache_quant_algo == "FP8")
    if reason:
        raise SwallowTrtError(
            f"Cannot search for an SLO: outside the predictor's data: {reason}.",
            "Plan the memory without --slo, and measure on the GPU (`swallow-trt bench`).",
        )
    units = unit_points(s, gpus or GPUS_PER_NODE)
    (answer,) = ask([scenario_query(s, isl, osl, tuple(p for p, _ in units))])
    fitting = [
        Candidate(point, metrics, unit_gpus)
        for (point, unit_gpus), metrics in zip(units, answer.points, strict=True)
        if "error" not in metrics and metrics["kv_fits"]
    ]
    ranked = []
    for unit in fitting:
        if not _meets(unit.metrics, bounds):
            continue
        if gpus is not None:
            replicas = gpus // unit.unit_gpus
        else:
            replicas = math.ceil(users / unit.metrics["concurrency"])
        ranked.append(Candidate(unit.point, unit.metrics, unit.unit_gpus, replicas))
    if gpus is not None:
        ranked.sort(key=lambda c: (-c.predicted()["tokens_per_s"], -c.metrics["tokens_per_s_per_user"]))
    else:
        ranked.sort(key=lambda c: (c.gpus, -c.metrics["tokens_per_s_per_gpu"]))
    return SearchResult(bounds, fitting, ranked, answer, gpus, users)


def shown(result: SearchResult) -> list[Candidate]:
    """The best deployments to print side by side: the best of each mode first, then the next best."""
    picks: list[Candidate] = []
    for mode in ("agg", "disagg"):
        best = next((c for c in result.ranked if c.mode == mode), None)
        if best is not None:
            picks.append(best)
    picks.sort(key=result.ranked.index)
    picks += [c for c in result.ranked if c not in picks][: SHOWN - len(picks)]
    return sorted(picks, key=result.ranked.index)


def choice(s: Scenario, isl: int, osl: int, result: SearchResult, model_name: str) -> DeploymentChoice:
    """The best deployment as what `build --choice` and `deploy dynamo --choice` carry out."""
    best = result.best
    if best is None:
        raise SwallowTrtError("No configuration meets the SLO: there is nothing to save.")
    return DeploymentChoice(
        model=model_name,
        gpu=s.gpu.name,
        quant=s.quant.name,
        kv_cache_dtype=kv_cache_dtype_for(s.kv_cache_quant_algo).name,
        max_seq_len=isl + osl,
        kv_cache_free_gpu_memory_fraction=result.answer.kv_fraction,
        roles=best.roles(isl),
        isl=isl,
        osl=osl,
        predicted=best.predicted(),
        predictor=result.answer.predictor(),
    )
