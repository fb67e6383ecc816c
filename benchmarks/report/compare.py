"""REPORT.md with tables and PNG plots comparing several results directories (`swallow-trt report`).

Each directory is one build (its label: fp8-tp1, int4-tp1, bf16-tp2, ...), with one or more load
levels. The throughput-latency chart draws one line per label across its load levels; the TTFT and ITL
charts compare the labels' distributions (ECDFs) at each load level.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.metrics.results import DEFINITIONS, LevelResult, read_results
from benchmarks.metrics.summary import error_share, unhealthy
from benchmarks.report import prediction
from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir

# (x-axis metric path, axis label) for the throughput-latency panels; y is output tokens/s.
TRADEOFF_PANELS = (
    (("metrics", "ttft_ms", "p50"), "TTFT p50 (ms)"),
    (("metrics", "tpot_ms", "p50"), "TPOT p50 (ms)"),
    (("metrics", "e2e_ms", "p50"), "E2E latency p50 (ms)"),
    (("output_token_throughput_per_user",), "tokens/s per user (mean 1/TPOT)"),
)
TABLE_COLUMNS = (
    ("Label", lambda s: s["label"]),
    ("Load", lambda s: s["config"].get("load_level", "")),
    ("OK", lambda s: s["num_completed"]),
    ("Err", lambda s: f"{s['num_errors']} ({error_share(s):.0%})" if s["num_errors"] else "0"),
    ("req/s", lambda s: _flagged(s, _fmt(s["request_throughput"], 2))),
    ("out tok/s", lambda s: _flagged(s, _fmt(s["output_token_throughput"], 1))),
    ("goodput req/s", lambda s: _fmt(s.get("goodput"), 2)),
    ("TTFT p50 / p90 / p99 ms", lambda s: _trio(s, "ttft_ms", ("p50", "p90", "p99"))),
    ("ITL p50 / p99 ms", lambda s: _trio(s, "itl_ms", ("p50", "p99"))),
    ("TPOT p50 / p99 ms", lambda s: _trio(s, "tpot_ms", ("p50", "p99"))),
    ("E2E p50 / p99 ms", lambda s: _trio(s, "e2e_ms", ("p50", "p99"))),
)


# Chunk gaps span decades (sub-ms bursts to seconds-long stalls): a linear axis squashes the typical gaps.
LOG_AXIS = {"itl_ms"}
LOG_FLOOR_MS = 0.01  # gaps at or below this (chunks in one read) sit at the axis' left edge
FLAG = "⚠"  # beside the throughput of a level that had errors or during which the server was given up on


def _flagged(summary: dict[str, Any], cell: str) -> str:
    return f"{FLAG} {cell}" if unhealthy(summary) else cell


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _trio(summary: dict[str, Any], metric: str, keys: tuple[str, ...]) -> str:
    stats = summary["metrics"].get(metric, {})
    return " / ".join(_fmt(stats.get(key), 1) for key in keys)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def collect(directories: list[Path]) -> dict[str, list[LevelResult]]:
    """Label -> its levels (sorted by load). Repeated labels get their directory name appended."""
    by_label: dict[str, list[LevelResult]] = {}
    for directory in directories:
        levels = read_results(directory)
        label = levels[0].label
        if label in by_label:
            label = f"{label} ({Path(directory).name})"
        for level in levels:
            level.summary["label"] = label
        by_label[label] = levels
    return by_label


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table, then what each flagged level went through."""
    header = "| " + " | ".join(name for name, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    lines = [header, rule]
    for summary in rows:
        lines.append("| " + " | ".join(str(get(summary)) for _, get in TABLE_COLUMNS) + " |")
    flagged = [(summary, unhealthy(summary)) for summary in rows if unhealthy(summary)]
    if flagged:
        lines += ["", f"{FLAG} Not a healthy server's throughput:"]
        lines += [f"- {s['label']} {s['config'].get('load_level', '')}: {why}" for s, why in flagged]
    return "\n".join(lines)


def _style(plt_module):
    plt_module.rcParams.update(
        {"figure.dpi": 110, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9}
    )


def plot_tradeoff(by_label: dict[str, list[LevelResult]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _style(plt)
    figure, axes = plt.subplots(2, 2, figsize=(12, 9))
    for axis, (x_path, x_label) in zip(axes.flat, TRADEOFF_PANELS, strict=True):
        for label, levels in by_label.items():
            points = [
                (_get(level.summary, x_path), level.summary["output_token_throughput"], level.load_name)
                for level in levels
            ]
            points = [p for p in points if p[0] is not None]
            if not points:
                continue
            xs, ys, names = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", label=label)
            for x, y, name in points:
                axis.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            for level in levels:  # a level with errors is marked where its point is
                if unhealthy(level.summary) and _get(level.summary, x_path) is not None:
                    at = (_get(level.summary, x_path), level.summary["output_token_throughput"])
                    axis.plot(*at, marker="x", color="red", markersize=10, zorder=5)
        axis.set_xlabel(x_label)
        axis.set_ylabel("output tokens/s")
        axis.set_ylim(bottom=0)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.962),
            ncol=min(5, len(labels)),
            frameon=False,
        )
    figure.suptitle("Throughput against latency across load levels (one line per build)", y=0.99)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    figure.savefig(path)
    plt.close(figure)


def request_samples(level: LevelResult, metric: str) -> list[float]:
    """Per-request TTFT, or the pooled chunk gaps for ITL, of completed requests."""
    samples: list[float] = []
    for row in level.requests():
        if row.get("error") or row.get("cancelled"):
            continue
        if metric == "ttft_ms" and row.get("ttft_ms") is not None:
            samples.append(row["ttft_ms"])
        elif metric == "itl_ms":
            offsets = row.get("chunk_offsets_ms") or []
            samples += [b - a for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return samples


def plot_distribution(by_label: dict[str, list[LevelResult]], metric: str, title: str, path: Path) -> bool:
    """ECDF per label, one panel per load level. False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    _style(plt)
    panels: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for label, levels in by_label.items():
        for level in levels:
            samples = request_samples(level, metric)
            if samples:
                panels[level.load_name][label] = samples
    if not panels:
        return False
    names = list(panels)
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.4 * columns, 4.4 * rows), squeeze=False)
    colors = {label: f"C{i}" for i, label in enumerate(by_label)}
    log = metric in LOG_AXIS
    for axis, name in zip(axes.flat, names, strict=False):
        if log:
            panels[name] = {
                label: np.maximum(samples, LOG_FLOOR_MS) for label, samples in panels[name].items()
            }
        for label, samples in panels[name].items():
            values = np.sort(np.asarray(samples))
            fraction = np.arange(1, len(values) + 1) / len(values)
            axis.step(values, fraction, where="post", color=colors[label], label=f"{label} (n={len(values)})")
            axis.axvline(np.percentile(values, 99), color=colors[label], linestyle=":", linewidth=1)
        upper = max(float(np.percentile(samples, 99.9)) for samples in panels[name].values())
        lower = min(min(samples) for samples in panels[name].values())
        if log:
            axis.set_xscale("log")
            axis.set_xlim(lower / 1.2, upper * 1.2)
        else:
            axis.set_xlim(max(0.0, lower - 0.05 * (upper - lower)), upper + 0.05 * (upper - lower) + 1e-9)
        axis.set_title(f"load {name}")
        scale = "; log axis" if log else ""
        axis.set_xlabel(f"{title} (ms); dotted: p99; axis up to p99.9{scale}")
        axis.set_ylabel("fraction of samples ≤ x")
        axis.set_ylim(0, 1.02)
        axis.legend(loc="lower right")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.suptitle(f"{title} distribution by build and load level", y=0.995)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path)
    plt.close(figure)
    return True


def describe_inputs(by_label: dict[str, list[LevelResult]]) -> list[str]:
    lines = [
        "| Label | Directory | Protocol | Dataset | ISL / OSL | Loads | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, levels in by_label.items():
        config = levels[0].summary.get("config", {})
        notes = []
        if any(level.summary.get("partial") for level in levels):
            notes.append("partial (Ctrl-C)")
        notes += [
            f"server given up on {level.summary['aborted']}"
            for level in levels
            if level.summary.get("aborted")
        ]
        errors = sum(level.summary.get("num_errors", 0) for level in levels)
        if errors:
            notes.append(f"{errors} errors")
        mismatches = sum(level.summary.get("token_count_mismatches", 0) for level in levels)
        if mismatches:
            notes.append(f"{mismatches} server/tokenizer token-count mismatches > 1 %")
        sources = sorted({s for level in levels for s in level.summary.get("output_tokens_source", {})})
        notes.append("tokens: " + (", ".join(sources) or "-"))
        done = sum(level.summary.get("num_completed", 0) for level in levels)
        if done and not any((level.summary["metrics"].get("itl_ms") or {}).get("count") for level in levels):
            notes.append("no ITL measured")  # e.g. trtllm-bench keeps no per-token times
        if levels[0].summary.get("source"):
            notes.append(f"source: {levels[0].summary['source']}")
        mean_input = sum(level.summary.get("total_input_tokens", 0) for level in levels) / max(done, 1)
        lengths = f"{config.get('isl') or f'mean {mean_input:.0f}'} / {config.get('osl', '-')}"
        directory = levels[0].directory if len(levels) == 1 else levels[0].directory.parent
        lines.append(
            f"| {label} | `{directory}` | {config.get('protocol', '-')} | {config.get('dataset', '-')} | "
            f"{lengths} | {', '.join(level.load_name for level in levels)} | {'; '.join(notes)} |"
        )
    return lines


def render_report(
    by_label: dict[str, list[LevelResult]],
    plots: dict[str, str],
    predicted: list[prediction.Comparison] | None = None,
) -> str:
    rows = [level.summary for levels in by_label.values() for level in levels]
    slos = sorted({f"{k}≤{v:g}" for row in rows for k, v in (row.get("slo_ms") or {}).items()})
    parts = [
        "# Benchmark report",
        "",
        f"Builds compared: {', '.join(by_label)}.",
        "",
        "## Runs",
        "",
        *describe_inputs(by_label),
        "",
        "## Results by load level",
        "",
        markdown_table(rows),
        "",
    ]
    if slos:
        parts += [f"Goodput SLOs (ms): {', '.join(slos)}.", ""]
    for name, (file, caption) in {
        "tradeoff": ("throughput_vs_latency.png", "Throughput against latency"),
        "ttft": ("ttft_distribution.png", "TTFT distribution"),
        "itl": ("itl_distribution.png", "ITL distribution (gaps between streamed chunks)"),
    }.items():
        if name in plots:
            parts += [f"## {caption}", "", f"![{caption}]({file})", ""]
    if predicted:
        parts += prediction.render(predicted)
    parts += ["## Definitions", "", "| Metric | Definition |", "|---|---|"]
    parts += [f"| `{key}` | {text} |" for key, text in DEFINITIONS.items()]
    parts += [
        "",
        "Latency statistics: mean, population std, min, max and linearly interpolated percentiles over "
        "completed requests (ITL: over all chunk gaps). Errors are counted, never dropped; warm-up "
        "requests are excluded.",
        "",
    ]
    return "\n".join(parts)


def write_report(
    results_dirs: list[Path],
    output: Path,
    overwrite: bool = False,
    predictions: dict[str, Path] | None = None,
) -> int:
    """Write REPORT.md and its PNG plots into `output` (whole or not at all); returns how many plots.
    `predictions`: label -> deployment choice whose predictions that build's measurements are put beside."""
    for directory in results_dirs:
        if not directory.is_dir():
            raise SwallowTrtError(
                f"{directory} does not exist; pass directories written by swallow-trt bench."
            )
    started = time.time()
    by_label = collect(list(results_dirs))
    predicted = prediction.comparisons(predictions or {}, by_label)
    with atomic_output_dir(output, overwrite) as tmp:
        plots: dict[str, str] = {}
        plot_tradeoff(by_label, tmp / "throughput_vs_latency.png")
        plots["tradeoff"] = "throughput_vs_latency.png"
        if plot_distribution(by_label, "ttft_ms", "TTFT", tmp / "ttft_distribution.png"):
            plots["ttft"] = "ttft_distribution.png"
        if plot_distribution(by_label, "itl_ms", "ITL", tmp / "itl_distribution.png"):
            plots["itl"] = "itl_distribution.png"
        if predicted:
            prediction.plot(predicted, tmp / prediction.PLOT)
            plots["prediction"] = prediction.PLOT
        (tmp / "REPORT.md").write_text(render_report(by_label, plots, predicted), encoding="utf-8")
        write_manifest(
            tmp,
            "report",
            inputs=[str(d) for d in results_dirs],
            labels=list(by_label),
            predictions={label: str(path) for label, path in (predictions or {}).items()},
            seconds=time.time() - started,
        )
    return len(plots)
