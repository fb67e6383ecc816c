"""Per-request records and the benchmark summary, with each metric's definition next to it.

The tools disagree on names (see docs/metrics.md §2.8), so ours say exactly what they are:
ITL is the gap between streamed chunks pooled over all requests (vLLM / SGLang), TPOT is the
per-request average (E2E - TTFT) / (output tokens - 1), which genai-perf and AIPerf call "ITL".
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trt_build.common.errors import UsageError

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms")
GOODPUT_KEYS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "e2e_ms", "e2el": "e2e_ms"}
ERROR_CHARS = 500  # a request's error message is cut to this (a server may answer with a whole page)


@dataclass
class RequestRecord:
    """What one request did, as seen by the client. Times are `time.perf_counter()` seconds."""

    index: int
    send_time: float  # just before the request left the client
    chunk_times: list[float] = field(default_factory=list)  # arrival of each response carrying text
    end_time: float | None = None  # the stream ended (final response or end of body)
    output_tokens: int | None = None
    output_tokens_source: str = ""  # "server" (returned counts) or "tokenizer" (model's tokenizer)
    output_tokens_tokenizer: int | None = None  # the tokenizer's count, kept as a cross-check
    server_counts: list[int] = field(default_factory=list, repr=False)  # num_output_tokens per response
    server_count_reading: str = ""  # "per-response" or "cumulative": how server_counts were read
    input_tokens: int = 0  # prompt tokens counted with the model's tokenizer (no special tokens)
    requested_output_tokens: int = 0
    error: str | None = None
    cancelled: bool = False  # stopped by Ctrl-C or the end of a --duration run, not a server error
    text: str = field(default="", repr=False)  # the streamed text; never written to requests.jsonl

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled and bool(self.chunk_times)

    def fail(self, message: str) -> None:
        """Mark the request failed; the message is cut to ERROR_CHARS."""
        self.error = message[:ERROR_CHARS]

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times[0] - self.send_time if self.chunk_times else None

    @property
    def e2e_s(self) -> float | None:
        return self.end_time - self.send_time if self.end_time is not None else None

    @property
    def itls_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times[:-1], self.chunk_times[1:], strict=True)]

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); undefined for one output token."""
        if not self.ok or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def latencies_ms(self) -> dict[str, float | None]:
        """The latencies an SLO can bound, in ms (None where the request has none)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else value * 1e3

        return {"ttft_ms": ms(self.ttft_s), "tpot_ms": ms(self.tpot_s), "e2e_ms": ms(self.e2e_s)}

    def to_json(self, origin: float) -> dict[str, Any]:
        """One requests.jsonl line: times in ms relative to the run's start, counts, no prompt text."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1e3, 3)

        return {
            "index": self.index,
            "send_ms": ms(self.send_time - origin),
            "ttft_ms": ms(self.ttft_s),
            "e2e_ms": ms(self.e2e_s),
            "tpot_ms": ms(self.tpot_s),
            "chunk_offsets_ms": [ms(t - self.send_time) for t in self.chunk_times],
            "num_chunks": len(self.chunk_times),
            "input_tokens": self.input_tokens,
            "requested_output_tokens": self.requested_output_tokens,
            "output_tokens": self.output_tokens,
            "output_tokens_source": self.output_tokens_source,
            "output_tokens_tokenizer": self.output_tokens_tokenizer,
            "server_count_reading": self.server_count_reading or None,
            "error": self.error,
            "cancelled": self.cancelled,
        }


@dataclass
class Distribution:
    """Statistics of one latency in milliseconds. std is the population std (numpy's default, as vLLM);
    percentiles interpolate linearly between samples (numpy's default). Empty -> all None."""

    count: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, samples_ms: list[float]) -> Distribution:
        if not samples_ms:
            return cls()
        values = np.asarray(samples_ms, dtype=np.float64)
        points = np.percentile(values, PERCENTILES)
        return cls(
            count=len(values),
            mean=float(values.mean()),
            std=float(values.std()),
            min=float(values.min()),
            max=float(values.max()),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, points, strict=True)},
        )


@dataclass
class Summary:
    """One load level. Only completed requests enter the latency statistics; errors are counted."""

    label: str
    config: dict[str, Any]
    num_requests: int  # measured requests sent (warm-up excluded)
    num_completed: int  # finished without error and streamed at least one chunk
    num_errors: int  # failed (transport error, server error event, empty stream)
    num_cancelled: int  # stopped by Ctrl-C / end of --duration while in flight
    duration_s: float  # last response end - first request send, over the measured requests
    request_throughput: float  # num_completed / duration_s  [req/s]
    output_token_throughput: float  # sum of output tokens of completed requests / duration_s  [tok/s]
    total_input_tokens: int
    total_output_tokens: int
    # TTFT: first chunk with text - send, per request.
    # ITL: gap between consecutive chunks with text, pooled over all chunks of all requests (vLLM/SGLang ITL).
    # TPOT: (E2E - TTFT) / (output tokens - 1), per request; requests with 1 output token have none
    #       (genai-perf / AIPerf call this "ITL").
    # E2E: end of stream - send, per request.
    metrics: dict[str, Distribution]
    output_token_throughput_per_user: float | None  # mean over requests of 1 / TPOT  [tok/s/user]
    goodput: float | None  # requests meeting every SLO / duration_s  [req/s]; None without SLOs
    goodput_fraction: float | None  # requests meeting every SLO / completed requests
    slo_ms: dict[str, float]
    output_tokens_source: dict[str, int]  # how many completed requests took counts from where
    token_count_mismatches: int  # server count and tokenizer count differ by more than 1 %
    errors: dict[str, int]  # error message -> count
    partial: bool = False  # Ctrl-C stopped the run; what was measured is kept
    aborted: str | None = (
        None  # why the server was given up on during this level (its numbers are not healthy)
    )
    warmup: dict[str, Any] = field(default_factory=dict)  # warm-up requests, reported apart
    client: dict[str, Any] = field(default_factory=dict)  # the client's own CPU time (is it the bottleneck?)

    @property
    def error_rate(self) -> float:
        """Failed / measured requests (0 when none were sent)."""
        return error_share(vars(self))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {name: asdict(dist) for name, dist in self.metrics.items()}
        data["error_rate"] = self.error_rate
        return data

    def csv_row(self) -> dict[str, Any]:
        """A flat row: the headline numbers and every latency statistic."""
        row: dict[str, Any] = {
            "label": self.label,
            "load": self.config.get("load_level", ""),
            "num_completed": self.num_completed,
            "num_errors": self.num_errors,
            "duration_s": round(self.duration_s, 4),
            "request_throughput": round(self.request_throughput, 4),
            "output_token_throughput": round(self.output_token_throughput, 3),
            "goodput": None if self.goodput is None else round(self.goodput, 4),
            "error_rate": round(self.error_rate, 4),
            "aborted": self.aborted or "",
        }
        for name, dist in self.metrics.items():
            for key in ("mean", "std", "min", "max", *(f"p{p}" for p in PERCENTILES)):
                value = getattr(dist, key)
                row[f"{name}_{key}"] = None if value is None else round(value, 3)
        return row


def read_server_counts(counts: list[int], tokenizer_count: int | None) -> tuple[int, str]:
    """The request's output tokens from per-response `num_output_tokens` values.

    Triton's OpenAI frontend treats them as the tokens of each response and sums them (vLLM backend);
    other backends send the running total. Both readings are computed and the one nearer the
    tokenizer's count of the streamed text wins; with no text to compare, per-response is assumed.
    """
    total, last = sum(counts), counts[-1]
    if tokenizer_count is not None and abs(last - tokenizer_count) < abs(total - tokenizer_count):
        return last, "cumulative"
    return total, "per-response"


def parse_goodput(spec: str | None) -> dict[str, float]:
    """`ttft:200,tpot:50,e2e:5000` (milliseconds) -> {"ttft_ms": 200.0, ...}."""
    if not spec:
        return {}
    slos: dict[str, float] = {}
    for part in spec.replace(" ", ",").split(","):
        if not part:
            continue
        name, _, value = part.partition(":")
        if name.lower() not in GOODPUT_KEYS or not value:
            raise UsageError(
                f"Bad --goodput entry {part!r}: use NAME:MS with NAME one of ttft, tpot, e2e, "
                "e.g. --goodput ttft:500,tpot:50"
            )
        try:
            limit = float(value)
        except ValueError:
            raise UsageError(f"Bad --goodput value {value!r} in {part!r}: a number of ms.") from None
        if not math.isfinite(limit) or limit <= 0:
            raise UsageError(f"--goodput {name} must be a positive number of ms, got {value}.")
        slos[GOODPUT_KEYS[name.lower()]] = limit
    return slos


def meets_slos(latencies_ms: dict[str, float | None], slo_ms: dict[str, float]) -> bool:
    """A completed request is good when each of its latencies (ms) is within the SLO. A request with one
    output token has no TPOT and counts as meeting a TPOT SLO (as vLLM's goodput does)."""
    for name, limit in slo_ms.items():
        value = latencies_ms[name]
        if value is None:
            if name == "tpot_ms":
                continue
            return False
        if value > limit:
            return False
    return True


def rates(
    duration_s: float, completed: int, output_tokens: int, good: int | None, per_user_tok_s: list[float]
) -> dict[str, float | None]:
    """The Summary fields derived from counts over a level's duration (served and engine-level runs alike):
    request and token throughput, mean tokens/s per user, goodput and the fraction of requests it counts."""

    def per_second(count: float) -> float:
        return count / duration_s if duration_s > 0 else 0.0

    return {
        "request_throughput": per_second(completed),
        "output_token_throughput": per_second(output_tokens),
        "output_token_throughput_per_user": float(np.mean(per_user_tok_s)) if per_user_tok_s else None,
        "goodput": None if good is None else per_second(good),
        "goodput_fraction": None if good is None or not completed else good / completed,
    }


def summarize(
    records: list[RequestRecord],
    label: str,
    config: dict[str, Any],
    slo_ms: dict[str, float] | None = None,
    partial: bool = False,
    warmup: dict[str, Any] | None = None,
    aborted: str | None = None,
) -> Summary:
    """The summary of the measured (non-warm-up) requests of one load level."""
    slo_ms = slo_ms or {}
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and not r.cancelled]
    cancelled = [r for r in records if r.cancelled]
    starts = [r.send_time for r in records]
    ends = [t for r in records for t in ([r.end_time] if r.end_time is not None else r.chunk_times[-1:])]
    duration = (max(ends) - min(starts)) if starts and ends else 0.0
    total_out = sum(r.output_tokens or 0 for r in done)
    tpots = [r.tpot_s for r in done if r.tpot_s is not None]
    metrics = {
        "ttft_ms": Distribution.of([r.ttft_s * 1e3 for r in done]),
        "itl_ms": Distribution.of([gap * 1e3 for r in done for gap in r.itls_s]),
        "tpot_ms": Distribution.of([t * 1e3 for t in tpots]),
        "e2e_ms": Distribution.of([r.e2e_s * 1e3 for r in done]),
    }
    good = sum(meets_slos(r.latencies_ms(), slo_ms) for r in done) if slo_ms else None
    mismatches = sum(
        1
        for r in done
        if r.output_tokens_source == "server"
        and r.output_tokens_tokenizer is not None
        and abs(r.output_tokens_tokenizer - (r.output_tokens or 0)) > 0.01 * max(r.output_tokens or 0, 1)
    )
    return Summary(
        label=label,
        config=config,
        num_requests=len(records),
        num_completed=len(done),
        num_errors=len(failed),
        num_cancelled=len(cancelled),
        duration_s=duration,
        total_input_tokens=sum(r.input_tokens for r in done),
        total_output_tokens=total_out,
        metrics=metrics,
        **rates(duration, len(done), total_out, good, [1.0 / t for t in tpots if t > 0]),
        slo_ms=slo_ms,
        output_tokens_source=dict(Counter(r.output_tokens_source for r in done)),
        token_count_mismatches=mismatches,
        errors=dict(Counter(r.error or "no chunks streamed" for r in failed)),
        partial=partial,
        aborted=aborted,
        warmup=warmup or {},
    )


def error_share(summary: dict[str, Any]) -> float:
    """Failed / measured requests of a summary.json (Summary.error_rate, also for results written before it)."""
    errors = summary.get("num_errors") or 0
    return errors / (summary.get("num_requests") or errors or 1)


def unhealthy(summary: dict[str, Any]) -> str:
    """Why a level's throughput must not be read as a healthy server's ("" when it may): errors, or the
    server given up on. Reads summary.json's form, so reports of older results work too."""
    reasons = []
    if summary.get("num_errors"):
        reasons.append(f"{summary['num_errors']} errors ({error_share(summary):.0%})")
    if summary.get("aborted"):
        reasons.append(f"aborted: {summary['aborted']}")
    return "; ".join(reasons)


def headline(summary: Summary) -> str:
    """One line per load level for the terminal: counts, throughput, goodput and the latency medians."""
    m = summary.metrics

    def ms(name: str, key: str) -> str:
        value = getattr(m[name], key)
        return "-" if value is None else f"{value:.1f}"

    good = "" if summary.goodput is None else f"  goodput {summary.goodput:.2f} req/s"
    flag = unhealthy(summary.to_json())
    return (
        f"{summary.config['load_level']:>8}: {summary.num_completed} ok, {summary.num_errors} errors"
        f"{', partial' if summary.partial else ''}{f' [UNHEALTHY: {flag}]' if flag else ''} | "
        f"{summary.request_throughput:.2f} req/s, "
        f"{summary.output_token_throughput:.1f} tok/s{good} | TTFT p50 {ms('ttft_ms', 'p50')} "
        f"p99 {ms('ttft_ms', 'p99')} ms | ITL p50 {ms('itl_ms', 'p50')} ms | TPOT p50 {ms('tpot_ms', 'p50')} ms "
        f"| E2E p50 {ms('e2e_ms', 'p50')} ms"
    )
