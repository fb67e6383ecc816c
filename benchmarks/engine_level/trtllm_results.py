"""trtllm-bench's own JSON output -> an ordinary swallow-trt level result (summary.json, summary.csv,
requests.jsonl), so engine-level numbers sit beside served ones in `swallow-trt report`; the gap between
them is the serving overhead (docs/metrics.md §1.5).

The format comes from NVIDIA/TensorRT-LLM source (stored versions read with the search tools; the
2.5 GB repository could not be fetched whole, so the `v1.2.1` tag itself was not checked out):

- `--request_json` is written by `throughput_command` in `tensorrt_llm/bench/benchmark/throughput.py`
  @000a01de66f0 as ONE JSON array: `ReportUtility.get_request_info` (`tensorrt_llm/bench/dataclasses/
  reporting.py` @0249976575050) dumps each `RequestRecord` (`tensorrt_llm/bench/dataclasses/statistics.py`
  @77d7fe1eb2d8) with `tokens` removed and `output` (decoded text) and `output_tokens` (= len(tokens)) added.
- Its stored fields are the same in every version read (@385626572df1, @77d7fe1eb2d8, upstream main as
  merged into Ataraksia/TensorRT-LLM @a451bf93888e): `id`, `num_input_tokens`, `error_tokens`,
  `start_timestamp`, `first_token_timestamp`, `end_timestamp`, `decode_iteration`.
- The timestamps are integer `time.perf_counter_ns()` values: NANOSECONDS (`tensorrt_llm/bench/benchmark/
  utils/asynchronous.py` @00c7a534e57e and its older form). `start` is taken when the request goes to the
  LLM API, after the concurrency semaphore; `first_token` when the first streamed output arrives (only
  with `--streaming`; otherwise it stays -1 and the computed TTFT is 0); `end` after the final output.
- There are no per-token times, so ITL (gaps between streamed chunks) cannot be measured: it is left
  empty with a note. trtllm-bench's own `intertoken_latency` is TPOT, not ITL.
- The computed fields changed between versions (`num_output_tokens` became `num_total_output_tokens`;
  `output_token_throughput` meant generation tok/s, later total tokens / E2E), so only stored fields
  are read and every metric is recomputed here with our definitions (benchmarks/metrics/summary.py).
- `--report_json` (`get_statistics_dict`, same reporting.py): sections `engine` (version, backend, dtype,
  quantization), `world_info`, `request_info`, `performance` (`*_ms`, `*_tok_s`, `*_req_s`) and with
  streaming `streaming_metrics` (`avg_ttft_ms`, `avg_tpot_ms`, percentiles in ms). Its percentiles are
  nearest-rank (`sorted[int(n * q)]`), ours interpolate, so only its means and throughputs are kept, as a
  cross-check.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.metrics.results import DEFINITIONS, write_csv
from benchmarks.metrics.summary import Distribution, Summary, meets_slos, rates
from trt_build.common.errors import SwallowTrtError

SOURCE = "trtllm-bench"
REQUESTS_FILE = "trtllm_requests.json"
REPORT_FILE = "trtllm_report.json"
NS_PER_MS = 1e6
OUTPUT_TOKEN_KEYS = ("output_tokens", "num_total_output_tokens", "num_output_tokens")  # newest name first
ITL_NOTE = (
    "itl_ms is empty: trtllm-bench records only the first-token and end times of a request, not each "
    "token, so chunk gaps cannot be measured (TPOT is not the same metric and is not substituted)."
)
NO_TTFT_NOTE = "ttft_ms and tpot_ms are empty: trtllm-bench ran without --streaming, so no first-token time."

# Engine-level wording of the definitions that differ from a served run's.
ENGINE_DEFINITIONS = {
    "ttft_ms": "time to first token: first streamed output - request handed to the LLM API, in process "
    "(trtllm-bench; no HTTP/gRPC, no detokenization), per request",
    "itl_ms": "not measured: trtllm-bench keeps no per-token times",
    "e2e_ms": "end-to-end latency: final output - request handed to the LLM API, in process, per request",
    "duration_s": "last request end - first request start, over measured requests (trtllm-bench's warm-up "
    "runs apart)",
}

# Our name -> where trtllm-bench's --report_json keeps it (kept in summary.json under "trtllm").
REPORT_FIELDS = {
    "version": ("engine", "version"),
    "backend": ("engine", "backend"),
    "dtype": ("engine", "dtype"),
    "quantization": ("engine", "quantization"),
    "kv_cache_dtype": ("engine", "kv_cache_dtype"),
    "tp_size": ("world_info", "tp_size"),
    "pp_size": ("world_info", "pp_size"),
    "world_size": ("world_info", "world_size"),
    "max_batch_size": ("world_info", "max_batch_size"),
    "max_num_tokens": ("world_info", "max_num_tokens"),
    "num_requests": ("request_info", "num_requests"),
    "total_latency_ms": ("performance", "total_latency_ms"),
    "avg_request_latency_ms": ("performance", "avg_request_latency_ms"),
    "request_throughput_req_s": ("performance", "request_throughput_req_s"),
    "output_throughput_tok_s": ("performance", "system_output_throughput_tok_s"),
    "output_throughput_per_gpu_tok_s": ("performance", "output_throughput_per_gpu_tok_s"),
    "avg_ttft_ms": ("streaming_metrics", "avg_ttft_ms"),
    "avg_tpot_ms": ("streaming_metrics", "avg_tpot_ms"),
}

# (our summary value, trtllm-bench's report value): the same quantity computed twice from the same run.
CROSS_CHECKS = {
    "request_throughput": (lambda s: s.request_throughput, "request_throughput_req_s"),
    "output_token_throughput": (lambda s: s.output_token_throughput, "output_throughput_tok_s"),
    "duration_ms": (lambda s: s.duration_s * 1e3, "total_latency_ms"),
    "e2e_mean_ms": (lambda s: s.metrics["e2e_ms"].mean, "avg_request_latency_ms"),
    "ttft_mean_ms": (lambda s: s.metrics["ttft_ms"].mean, "avg_ttft_ms"),
}
CROSS_CHECK_TOLERANCE = 0.01  # relative


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SwallowTrtError(f"Cannot read trtllm-bench output {path}: {error}") from None


def read_requests(path: Path) -> list[dict[str, Any]]:
    """The per-request records of `--request_json`: a JSON array of objects."""
    if not path.exists():
        raise SwallowTrtError(
            f"{path} is missing: trtllm-bench wrote no --request_json (an older version without the "
            "flag, or the run failed; see trtllm.log beside it).",
            "Per-request results need it.",
        )
    rows = _load_json(path)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise SwallowTrtError(f"{path} is not trtllm-bench --request_json output (a JSON array of objects).")
    for row in rows:
        missing = [key for key in ("start_timestamp", "end_timestamp") if key not in row]
        if missing or not any(key in row for key in OUTPUT_TOKEN_KEYS):
            raise SwallowTrtError(
                f"{path}: a request record lacks {missing or ' / '.join(OUTPUT_TOKEN_KEYS)}; this is not the "
                "trtllm-bench format this converter knows (benchmarks/engine_level/trtllm_results.py)."
            )
    return rows


def engine_request(row: dict[str, Any], origin_ns: int, index: int, requested: int | None) -> dict[str, Any]:
    """One requests.jsonl line, with our keys, from one trtllm-bench record (ns -> ms)."""
    start, first, end = row["start_timestamp"], row.get("first_token_timestamp", -1), row["end_timestamp"]
    tokens = next(row[key] for key in OUTPUT_TOKEN_KEYS if key in row)
    error = None
    if row.get("error_tokens"):
        error = f"trtllm-bench: {row['error_tokens']} error response(s)"
    elif end is None or end < 0:
        error = "trtllm-bench: no final response"
    done = error is None
    ttft = (first - start) / NS_PER_MS if done and first is not None and first > 0 else None
    tpot = (end - first) / NS_PER_MS / (tokens - 1) if ttft is not None and tokens >= 2 else None

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "index": index,
        "send_ms": ms((start - origin_ns) / NS_PER_MS),
        "ttft_ms": ms(ttft),
        "e2e_ms": ms((end - start) / NS_PER_MS) if done else None,
        "tpot_ms": ms(tpot),
        "chunk_offsets_ms": [],  # trtllm-bench keeps no per-chunk times
        "num_chunks": None,
        "input_tokens": row.get("num_input_tokens", 0),
        "requested_output_tokens": requested,
        "output_tokens": tokens,
        "output_tokens_source": "engine",  # token ids from the executor, never detokenized
        "output_tokens_tokenizer": None,
        "server_count_reading": None,
        "error": error,
        "cancelled": False,
    }


def summarize_engine(
    raw: list[dict[str, Any]],
    lines: list[dict[str, Any]],
    label: str,
    config: dict[str, Any],
    slo_ms: dict[str, float] | None = None,
) -> Summary:
    """Our summary of one level, with exactly the meanings of benchmarks/metrics/summary.py::summarize
    (which reads RequestRecords; here the lines already hold ms). `rates` and `meets_slos` are shared."""
    slo_ms = slo_ms or {}
    done = [line for line in lines if line["error"] is None]
    good = sum(meets_slos(line, slo_ms) for line in done) if slo_ms else None
    duration_ns = max(r["end_timestamp"] for r in raw) - min(r["start_timestamp"] for r in raw) if raw else 0
    duration = max(duration_ns, 0) / 1e9
    total_out = sum(line["output_tokens"] for line in done)
    tpots = [line["tpot_ms"] for line in done if line["tpot_ms"] is not None]

    def samples(key: str) -> list[float]:
        return [line[key] for line in done if line[key] is not None]

    return Summary(
        label=label,
        config=config,
        num_requests=len(lines),
        num_completed=len(done),
        num_errors=len(lines) - len(done),
        num_cancelled=0,
        duration_s=duration,
        total_input_tokens=sum(line["input_tokens"] for line in done),
        total_output_tokens=total_out,
        metrics={
            "ttft_ms": Distribution.of(samples("ttft_ms")),
            "itl_ms": Distribution(),
            "tpot_ms": Distribution.of(tpots),
            "e2e_ms": Distribution.of(samples("e2e_ms")),
        },
        **rates(duration, len(done), total_out, good, [1e3 / t for t in tpots if t > 0]),
        slo_ms=slo_ms,
        output_tokens_source=dict(Counter(line["output_tokens_source"] for line in done)),
        token_count_mismatches=0,
        errors=dict(Counter(line["error"] for line in lines if line["error"])),
        warmup={"requests": config.get("warmup"), "note": "run by trtllm-bench before the measured requests"},
    )


def report_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The fields of --report_json we keep (absent ones are left out: sections vary by version/mode)."""
    kept = {}
    for name, (section, key) in REPORT_FIELDS.items():
        value = (report.get(section) or {}).get(key)
        if value is not None:
            kept[name] = value
    return kept


def cross_check(summary: Summary, trtllm: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Ours against trtllm-bench's for quantities both compute; `ok` is within 1 %."""
    checks = {}
    for name, (ours_of, theirs_key) in CROSS_CHECKS.items():
        ours, theirs = ours_of(summary), trtllm.get(theirs_key)
        if ours is None or not isinstance(theirs, int | float) or theirs == 0:
            continue
        relative = abs(ours - theirs) / abs(theirs)
        checks[name] = {"ours": ours, "trtllm_bench": theirs, "ok": relative <= CROSS_CHECK_TOLERANCE}
    return checks


def convert_level(
    level_dir: Path,
    label: str,
    config: dict[str, Any],
    requested_output_tokens: int | None = None,
    slo_ms: dict[str, float] | None = None,
) -> Summary:
    """Read trtllm-bench's files in `level_dir` (kept as they are) and write our level result beside them."""
    raw = read_requests(level_dir / REQUESTS_FILE)
    report = _load_json(level_dir / REPORT_FILE) if (level_dir / REPORT_FILE).exists() else {}
    raw = sorted(raw, key=lambda row: row["start_timestamp"])
    origin = raw[0]["start_timestamp"] if raw else 0
    lines = [engine_request(row, origin, i, requested_output_tokens) for i, row in enumerate(raw)]
    summary = summarize_engine(raw, lines, label, config, slo_ms)

    trtllm = report_fields(report) if isinstance(report, dict) else {}
    checks = cross_check(summary, trtllm)
    notes = [ITL_NOTE]
    if summary.num_completed and summary.metrics["ttft_ms"].count == 0:
        notes.append(NO_TTFT_NOTE)
    notes += [
        f"{name}: ours {c['ours']:.4g} vs trtllm-bench {c['trtllm_bench']:.4g} (differ by more than 1 %)"
        for name, c in checks.items()
        if not c["ok"]
    ]
    extra = {
        "source": SOURCE,
        "notes": notes,
        "trtllm": trtllm,
        "cross_check": checks,
        "raw_files": sorted(name for name in (REQUESTS_FILE, REPORT_FILE) if (level_dir / name).exists()),
    }
    with open(level_dir / "requests.jsonl", "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    data = {"definitions": {**DEFINITIONS, **ENGINE_DEFINITIONS}, **summary.to_json(), **extra}
    (level_dir / "summary.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    write_csv(level_dir / "summary.csv", [{**summary.csv_row(), "source": SOURCE}])
    return summary
