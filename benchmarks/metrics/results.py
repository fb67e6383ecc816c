"""Results directories: writing one load level, a sweep's index, and reading them back for reports.

A level directory holds `requests.jsonl` (one line per request: times relative to the run's start and
token counts, no prompt or output text), `summary.json` and `summary.csv`. A sweep directory holds one
level directory per load level (`c1/`, `c4/`, `rate2/`), `index.json` and a `summary.csv` of all levels.
A single-level run writes the level files at the top.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.metrics.summary import RequestRecord, Summary
from trt_build.common.errors import SwallowTrtError

DEFINITIONS = {
    "ttft_ms": "time to first token: first streamed chunk with text - request send, per request",
    "itl_ms": "inter-token latency: gap between consecutive streamed chunks, pooled over all chunks of all "
    "requests (vLLM/SGLang ITL)",
    "tpot_ms": "time per output token: (E2E - TTFT) / (output tokens - 1), per request; none for 1 token "
    "(genai-perf/AIPerf call this ITL)",
    "e2e_ms": "end-to-end latency: end of stream - request send, per request",
    "request_throughput": "completed requests / duration_s [req/s]",
    "output_token_throughput": "output tokens of completed requests / duration_s [tok/s]",
    "duration_s": "last response - first request send, over measured (non-warm-up) requests",
    "goodput": "completed requests meeting every SLO in slo_ms / duration_s [req/s]",
    "error_rate": "failed / measured requests; a level with errors, or during which the server was given up "
    "on (`aborted`), is flagged: its throughput is not a healthy server's",
}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_level(directory: Path, summary: Summary, records: list[RequestRecord]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    origin = min((r.send_time for r in records), default=0.0)
    with open(directory / "requests.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(origin), ensure_ascii=False) + "\n")
    data = {"definitions": DEFINITIONS, **summary.to_json()}
    (directory / "summary.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    write_csv(directory / "summary.csv", [summary.csv_row()])


def write_index(
    directory: Path, label: str, levels: list[tuple[str, Summary]], partial: bool, stopped: str | None = None
) -> None:
    """index.json and summary.csv of a sweep; rewritten after each level, so the levels measured so far are
    readable whatever happens next. `stopped`: why the sweep ended early (None: it did not, or Ctrl-C)."""
    index = {
        "label": label,
        "partial": partial,
        "stopped": stopped,
        "levels": [
            {
                "name": name,
                "dir": name,
                "load": summary.config.get("load"),
                "num_completed": summary.num_completed,
                "num_errors": summary.num_errors,
                "error_rate": summary.error_rate,
                "aborted": summary.aborted,
                "request_throughput": summary.request_throughput,
                "output_token_throughput": summary.output_token_throughput,
            }
            for name, summary in levels
        ],
    }
    (directory / "index.json").write_text(json.dumps(index, ensure_ascii=False, indent=2) + "\n")
    write_csv(directory / "summary.csv", [summary.csv_row() for _, summary in levels])


@dataclass
class LevelResult:
    """One load level read back from disk."""

    directory: Path
    summary: dict[str, Any]

    @property
    def label(self) -> str:
        return self.summary.get("label") or self.directory.name

    @property
    def load_name(self) -> str:
        return self.summary.get("config", {}).get("load_level", self.directory.name)

    def requests(self) -> list[dict[str, Any]]:
        path = self.directory / "requests.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _load_sort_key(level: LevelResult) -> tuple[str, float]:
    load = level.summary.get("config", {}).get("load") or {}
    return (str(load.get("kind", "")), float(load.get("value") or 0))


def read_results(directory: Path) -> list[LevelResult]:
    """The levels of a results directory: a single level, or a sweep with index.json."""
    directory = Path(directory)
    if (directory / "index.json").exists():
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        levels = [
            LevelResult(
                directory / entry["dir"], json.loads((directory / entry["dir"] / "summary.json").read_text())
            )
            for entry in index.get("levels", [])
        ]
    elif (directory / "summary.json").exists():
        levels = [
            LevelResult(directory, json.loads((directory / "summary.json").read_text(encoding="utf-8")))
        ]
    else:
        raise SwallowTrtError(
            f"{directory} is not a benchmark results directory (no summary.json or index.json).",
            "Pass directories written by `swallow-trt bench --output`.",
        )
    return sorted(levels, key=_load_sort_key)
