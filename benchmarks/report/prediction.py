"""Measured against predicted (`swallow-trt report --prediction LABEL=choice.json`).

A build's measured metrics are put beside the predictions of a deployment choice (plan/deployment.py) at
the load level whose concurrency is the predicted one (or the nearest, saying so), as measured /
predicted, and its best throughput beside NVIDIA's published figure for the same case where there is one
(metrics/published.py). What differs between the measured and the predicted configuration (ISL / OSL,
GPU, TP) is stated beside the numbers, never compared silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.metrics.published import SOURCE, PublishedCase, published_tokens_per_s
from benchmarks.metrics.results import LevelResult
from trt_build.common.errors import SwallowTrtError, UsageError
from trt_build.plan.deployment import DeploymentChoice, load_choice
from trt_build.source.registry import lookup

BAND = 0.15  # the margin the predictor's figures carry (docs/upstream-2026.md §6: "about ±15 %")
OUTPUT_LENGTH_TOLERANCE = 0.05  # mean output tokens this far from the predicted OSL is a different workload
PLOT = "prediction_ratios.png"


def _latency_mean(metric: str) -> Callable[[dict[str, Any], int], float | None]:
    return lambda summary, gpus: (summary["metrics"].get(metric) or {}).get("mean")


# PREDICTED_METRICS key -> (what is measured, how from a level's summary.json and the GPU count)
MEASURED: dict[str, tuple[str, Callable[[dict[str, Any], int], float | None]]] = {
    "ttft_ms": ("TTFT mean (ms)", _latency_mean("ttft_ms")),
    "tpot_ms": ("TPOT / ITL mean (ms)", _latency_mean("tpot_ms")),
    "tokens_per_s_per_user": ("tok/s per user", lambda s, gpus: s.get("output_token_throughput_per_user")),
    "tokens_per_s_per_gpu": ("output tok/s per GPU", lambda s, gpus: s["output_token_throughput"] / gpus),
    "tokens_per_s": ("output tok/s", lambda s, gpus: s["output_token_throughput"]),
    "requests_per_s": ("requests/s", lambda s, gpus: s["request_throughput"]),
}


@dataclass(frozen=True)
class MetricRow:
    key: str  # a PREDICTED_METRICS key
    name: str
    measured: float | None
    predicted: float | None

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.predicted:
            return None
        return self.measured / self.predicted


@dataclass
class Comparison:
    """One build's measurements beside one choice's predictions."""

    label: str
    choice_file: Path
    choice: DeploymentChoice
    level: LevelResult
    level_note: str
    gpus: int  # the measured build's GPUs (its manifest), else the choice's: what per-GPU figures divide by
    rows: list[MetricRow]
    mismatches: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    published: str = ""


def parse_predictions(specs: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """`LABEL=choice.json` values of --prediction -> label -> file."""
    predictions: dict[str, Path] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise UsageError(
                f"--prediction {spec!r}: use LABEL=FILE, with LABEL a build's label in the report and FILE "
                "a deployment choice (`swallow-trt plan ... --save`)."
            )
        predictions[label] = Path(path)
    return predictions


def _load(summary: dict[str, Any]) -> dict[str, Any]:
    return summary.get("config", {}).get("load") or {}


def pick_level(levels: list[LevelResult], concurrency: float | None) -> tuple[LevelResult, str]:
    """The closed-loop level at the predicted concurrency, or the nearest one, and a note saying which."""
    closed = [level for level in levels if _load(level.summary).get("kind") == "concurrency"]
    if not closed:
        level = levels[-1]
        return level, f"no closed-loop (concurrency) level was measured: compared with {level.load_name}"
    if concurrency is None:
        level = closed[-1]
        return level, f"no predicted concurrency: compared with the highest, {level.load_name}"
    level = min(closed, key=lambda lv: (abs(float(_load(lv.summary)["value"]) - concurrency), lv.load_name))
    measured = float(_load(level.summary)["value"])
    if measured == concurrency:
        return level, f"{level.load_name}: the predicted concurrency {concurrency:g}"
    return level, (
        f"{level.load_name}: the nearest measured concurrency to the predicted {concurrency:g} "
        f"(measured: {', '.join(lv.load_name for lv in closed)})"
    )


def deployment_facts(summary: dict[str, Any]) -> dict[str, Any] | None:
    """GPU, TP and PP (None where unrecorded: engine manifests keep no TP) of the build an engine-level run
    measured, from its manifest; None when the results name no build."""
    engine_dir = summary.get("config", {}).get("engine_dir")
    manifest = Path(engine_dir) / "manifest.json" if engine_dir else None
    if manifest is None or not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    gpu = (data.get("gpu_profile") or {}).get("name")
    return None if gpu is None else {"gpu": gpu, "tp": data.get("tp"), "pp": data.get("pp")}


def configuration_check(
    choice: DeploymentChoice, level: LevelResult, facts: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """(what differs, what was checked and agrees) between the measured run (`facts`: its build's, from
    `deployment_facts`) and the prediction."""
    summary, config = level.summary, level.summary.get("config", {})
    mismatches, checked = [], []
    completed = summary.get("num_completed") or 0
    if config.get("isl") is None:
        mean_input = summary.get("total_input_tokens", 0) / max(completed, 1)
        mismatches.append(
            f"inputs from dataset {config.get('dataset', '?')!r} (mean {mean_input:.0f} tokens), "
            f"predicted for ISL {choice.isl}"
        )
    elif config["isl"] != choice.isl:
        mismatches.append(f"ISL {config['isl']} measured, {choice.isl} predicted")
    else:
        checked.append(f"ISL {choice.isl}")
    mean_output = summary.get("total_output_tokens", 0) / max(completed, 1)
    if config.get("osl") != choice.osl:
        mismatches.append(f"OSL {config.get('osl')} measured, {choice.osl} predicted")
    elif choice.osl and abs(mean_output - choice.osl) > OUTPUT_LENGTH_TOLERANCE * choice.osl:
        mismatches.append(
            f"outputs averaged {mean_output:.0f} tokens, not the predicted OSL {choice.osl} (bench --ignore-eos "
            "forces the length)"
        )
    else:
        checked.append(f"OSL {choice.osl}")
    if facts is None:
        mismatches.append(
            "GPU and TP are not recorded with these results (only `bench --engine-dir` runs name their build): "
            f"not checked, the choice's {choice.gpu} / TP {', '.join(str(r.tp) for r in choice.roles)} assumed"
        )
        return mismatches, checked
    agg = choice.role("agg") if choice.mode == "agg" else None
    if facts["gpu"] != choice.gpu:
        mismatches.append(f"GPU {facts['gpu']} measured, {choice.gpu} predicted")
    else:
        checked.append(f"GPU {choice.gpu}")
    if facts["tp"] is None:
        mismatches.append("TP is not recorded in the build's manifest: not checked")
    elif agg is None or (facts["tp"], facts["pp"]) != (agg.tp, agg.pp):
        predicted = f"TP {agg.tp} PP {agg.pp}" if agg else f"a {choice.mode} deployment"
        mismatches.append(f"TP {facts['tp']} PP {facts['pp']} measured, {predicted} predicted")
    else:
        checked.append(f"TP {agg.tp} PP {agg.pp}")
    return mismatches, checked


def published_line(choice: DeploymentChoice, levels: list[LevelResult]) -> str:
    """NVIDIA's published max throughput for the choice's case beside the best measured, or "none published"."""
    known = lookup(choice.model)
    size = known.size.lower() if known else None
    tp = choice.role("agg").tp if choice.mode == "agg" else None
    case_text = f"{known.size if known else choice.model} / {choice.gpu} / {choice.quant} / TP {tp} / ISL {choice.isl} / OSL {choice.osl}"
    figure = None
    if size and tp and choice.isl and choice.osl:
        figure = published_tokens_per_s(
            PublishedCase(size, choice.gpu, choice.quant, tp, choice.isl, choice.osl)
        )
    if figure is None:
        return f"NVIDIA published: none published for {case_text}."
    best = max(levels, key=lambda lv: lv.summary["output_token_throughput"])
    measured = best.summary["output_token_throughput"]
    return (
        f"NVIDIA published for {case_text}: {figure:,} output tok/s at max throughput ({SOURCE}); measured "
        f"best {measured:,.1f} tok/s at {best.load_name} ({measured / figure:.2f} of it); predicted "
        f"{_fmt(choice.predicted.get('tokens_per_s'), 1)} tok/s."
    )


def compare(label: str, choice_file: Path, levels: list[LevelResult]) -> Comparison:
    """The build `label`'s levels beside the choice in `choice_file`."""
    choice = load_choice(choice_file)
    level, note = pick_level(levels, choice.predicted.get("concurrency"))
    facts = deployment_facts(level.summary)
    gpus = facts["tp"] * (facts["pp"] or 1) if facts and facts["tp"] else choice.total_gpus
    rows = [
        MetricRow(key, name, measure(level.summary, gpus), choice.predicted.get(key))
        for key, (name, measure) in MEASURED.items()
    ]
    mismatches, checked = configuration_check(choice, level, facts)
    return Comparison(
        label,
        choice_file,
        choice,
        level,
        note,
        gpus,
        rows,
        mismatches,
        checked,
        published_line(choice, levels),
    )


def comparisons(predictions: dict[str, Path], by_label: dict[str, list[LevelResult]]) -> list[Comparison]:
    """Every --prediction, checked against the labels of the results given."""
    for label in predictions:
        if label not in by_label:
            raise SwallowTrtError(
                f"--prediction {label}=...: no results directory has the label {label!r} (labels: "
                f"{', '.join(by_label)}).",
                "Use one of those labels (`bench --label` sets it).",
            )
    return [compare(label, path, by_label[label]) for label, path in predictions.items()]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(items: list[Comparison]) -> list[str]:
    """REPORT.md's section: per comparison, the configuration, the table and the published figure."""
    lines = [
        "## Measured against predicted",
        "",
        f"Predictions are estimates of about ±{BAND:.0%} (docs/upstream-2026.md §6); the ratio is measured / "
        "predicted.",
        "",
    ]
    for item in items:
        choice = item.choice
        predictor = ", ".join(f"{k} {v}" for k, v in choice.predictor.items()) or "not recorded"
        roles = "; ".join(
            f"{r.role} {r.workers} x TP{r.tp} PP{r.pp} batch {r.max_batch_size}" for r in choice.roles
        )
        lines += [
            f"### {item.label} against `{item.choice_file}`",
            "",
            f"Predicted for {choice.model} on {choice.total_gpus} x {choice.gpu}, {choice.quant} (KV "
            f"{choice.kv_cache_dtype}), ISL {choice.isl} / OSL {choice.osl}, {roles}. Predictor: {predictor}.",
            "",
            f"Level compared: {item.level_note}. Measured per-GPU figures divide by {item.gpus} GPUs.",
            "",
        ]
        if item.mismatches:
            lines += [f"⚠ Not the same configuration: {'; '.join(item.mismatches)}.", ""]
        if item.checked:
            lines += [f"Same configuration: {', '.join(item.checked)}.", ""]
        lines += ["| Metric | Measured | Predicted | Measured / predicted |", "|---|---|---|---|"]
        for row in item.rows:
            flag = "" if row.ratio is None or abs(row.ratio - 1) <= BAND else " ⚠"
            lines.append(
                f"| {row.name} | {_fmt(row.measured)} | {_fmt(row.predicted)} | {_fmt(row.ratio)}{flag} |"
            )
        lines += ["", item.published, ""]
    lines += [f"![Measured / predicted per metric]({PLOT})", ""]
    return lines


def plot(items: list[Comparison], path: Path) -> None:
    """Measured / predicted per metric, one series per build, a line at 1.0 and the predictor's band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _ in MEASURED.values()]
    figure, axis = plt.subplots(figsize=(10, 5))
    axis.axhspan(1 - BAND, 1 + BAND, color="green", alpha=0.12, label=f"±{BAND:.0%} (the predictor's margin)")
    axis.axhline(1.0, color="black", linewidth=1)
    width = 0.8 / max(len(items), 1)
    for i, item in enumerate(items):
        points = [(j, row.ratio) for j, row in enumerate(item.rows) if row.ratio is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot([x + (i - (len(items) - 1) / 2) * width for x in xs], ys, "o", markersize=8,
                      label=f"{item.label} ({item.level.load_name})")  # fmt: skip
    axis.set_xticks(range(len(names)), names, rotation=20, ha="right")
    axis.set_ylabel("measured / predicted")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=9)
    axis.set_title("Measured against predicted, per metric and build")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
