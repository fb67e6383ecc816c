"""Predictions as the person at the terminal reads them, as JSON, and the Pareto front as a PNG. Every
figure is labelled an estimate with the predictor, its data and its margin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trt_build.plan.deployment import PREDICTED_METRICS
from trt_build.plan.predict.predict import Prediction
from trt_build.plan.predict.slo import Candidate, SearchResult, pareto_front, shown

ROWS = (  # (label, metric key, format)
    ("TTFT", "ttft_ms", "{:,.0f} ms"),
    ("TPOT / ITL", "tpot_ms", "{:,.1f} ms"),
    ("tok/s per user", "tokens_per_s_per_user", "{:,.1f}"),
    ("tok/s per GPU", "tokens_per_s_per_gpu", "{:,.0f}"),
    ("tok/s (all GPUs)", "tokens_per_s", "{:,.0f}"),
    ("requests/s", "requests_per_s", "{:,.2f}"),
    ("concurrency", "concurrency", "{:,.0f}"),
)


def source_line(predictor: dict[str, str]) -> str:
    return (
        f"estimates by {predictor['name']} {predictor['version']} from {predictor['data_version']} data, "
        f"margin {predictor['margin']}"
    )


def render_prediction(p: Prediction) -> str:
    at = f"concurrency {p.concurrency}" if p.concurrency else "max throughput (largest batch whose KV fits)"
    lines = [f"Predicted at ISL {p.isl} / OSL {p.osl}, {at}:"]
    if p.unavailable:
        return "\n".join([*lines, f"  no estimate: {p.unavailable}", *([f"  {p.fix}"] if p.fix else [])])
    m = p.metrics
    lines.append(f"  ({source_line(p.predictor)})")
    lines += [f"  {label:18} {fmt.format(m[key])}" for label, key, fmt in ROWS]
    fits = "yes" if m["kv_fits"] else "NO: excess requests queue, TTFT and TPOT will be worse"
    lines.append(f"  {'batch':18} {m['batch']} (KV cache holds it: {fits}; {m['memory_gb']:.1f} GB per GPU)")
    if p.note:
        lines.append(f"  Note: {p.note}")
    return "\n".join(lines)


def prediction_dict(p: Prediction) -> dict[str, Any]:
    return {
        "isl": p.isl,
        "osl": p.osl,
        "concurrency": p.concurrency,
        "estimate": not p.unavailable,
        "metrics": {k: p.metrics[k] for k in PREDICTED_METRICS} if p.metrics else None,
        "batch": p.metrics.get("batch"),
        "kv_fits": p.metrics.get("kv_fits"),
        "memory_gb_per_gpu": p.metrics.get("memory_gb"),
        "predictor": p.predictor or None,
        "unavailable": p.unavailable or None,
        "fix": p.fix or None,
        "note": p.note or None,
    }


def _bounds(result: SearchResult) -> str:
    return ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in result.bounds.items())


def render_search(result: SearchResult, isl: int, osl: int) -> str:
    budget = f"{result.gpus} GPUs" if result.gpus else f"{result.users} concurrent users"
    lines = [f"SLO search: {_bounds(result)} at ISL {isl} / OSL {osl}, for {budget}"]
    lines.append(f"  ({source_line(result.answer.predictor())})")
    if not result.ranked:
        lines.append(f"  no configuration of {len(result.all_units)} with a fitting KV cache meets the SLO")
        return "\n".join(lines)
    picks = shown(result)
    width = max(len(c.label()) for c in picks) + 2
    lines.append(f"  {'':18}" + "".join(f"{c.label():>{width}}" for c in picks))
    lines.append(f"  {'GPUs':18}" + "".join(f"{c.gpus:>{width}}" for c in picks))
    for label, key, fmt in ROWS:
        lines.append(f"  {label:18}" + "".join(f"{fmt.format(c.predicted()[key]):>{width}}" for c in picks))
    lines.append(
        f"Best: {picks[0].label()} ({len(result.ranked)} of {len(result.all_units)} units meet the SLO)"
    )
    return "\n".join(lines)


def _candidate_dict(c: Candidate, isl: int) -> dict[str, Any]:
    return {
        "label": c.label(),
        "mode": c.mode,
        "gpus": c.gpus,
        "replicas": c.replicas,
        "roles": [role.__dict__ for role in c.roles(isl)],
        "predicted": c.predicted(),
    }


def search_dict(result: SearchResult, isl: int, osl: int) -> dict[str, Any]:
    return {
        "isl": isl,
        "osl": osl,
        "slo": result.bounds,
        "gpus": result.gpus,
        "users": result.users,
        "predictor": result.answer.predictor(),
        "best": [_candidate_dict(c, isl) for c in shown(result)],
        "meeting_slo": len(result.ranked),
        "units": len(result.all_units),
        "pareto": [
            {
                "label": c.label(),
                **{k: c.metrics[k] for k in ("tokens_per_s_per_user", "tokens_per_s_per_gpu")},
            }
            for c in pareto_front(result.all_units)
        ],
    }


def plot_pareto(result: SearchResult, path: Path) -> None:
    """tok/s/GPU against tok/s/user: every unit, the front, the TPOT bound and the chosen deployment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for mode, color in (("agg", "tab:blue"), ("disagg", "tab:orange")):
        units = [c for c in result.all_units if c.mode == mode]
        ax.scatter(
            [c.metrics["tokens_per_s_per_user"] for c in units],
            [c.metrics["tokens_per_s_per_gpu"] for c in units],
            s=10,
            alpha=0.4,
            color=color,
            label=mode,
        )
    front = pareto_front(result.all_units)
    ax.plot(
        [c.metrics["tokens_per_s_per_user"] for c in front],
        [c.metrics["tokens_per_s_per_gpu"] for c in front],
        color="black",
        label="Pareto front",
    )
    if "tpot_ms" in result.bounds:
        ax.axvline(1000 / result.bounds["tpot_ms"], color="red", linestyle="--", label="TPOT bound")
    if result.best:
        m = result.best.metrics
        ax.scatter([m["tokens_per_s_per_user"]], [m["tokens_per_s_per_gpu"]], s=80, marker="*", color="red")
    ax.set_xlabel("output tokens/s per user (estimate)")
    ax.set_ylabel("output tokens/s per GPU (estimate)")
    ax.set_title(f"Pareto front, {_bounds(result)} ({result.answer.predictor()['name']} estimates)")
    ax.legend()
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")  # whole or not at all
    fig.savefig(partial, dpi=100)
    plt.close(fig)
    partial.replace(path)
