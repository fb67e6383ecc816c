"""The metric math on hand-made records: TTFT, pooled ITL, per-request TPOT, percentiles, goodput, errors."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics.summary import (
    Distribution,
    RequestRecord,
    meets_slos,
    parse_goodput,
    read_server_counts,
    summarize,
)
from trt_build.common.errors import SwallowTrtError


def record(
    index: int, send: float, chunks: list[float], end: float | None = None, tokens: int | None = None, **kw
):
    """A record whose times are given in ms after t=100 s; tokens default to one per chunk."""
    base = 100.0
    return RequestRecord(
        index=index,
        send_time=base + send / 1e3,
        chunk_times=[base + t / 1e3 for t in chunks],
        end_time=None
        if end is None and not chunks
        else base + (end if end is not None else chunks[-1]) / 1e3,
        output_tokens=len(chunks) if tokens is None else tokens,
        output_tokens_source="server",
        input_tokens=10,
        **kw,
    )


def test_ttft_itl_tpot_e2e_of_two_requests():
    a = record(0, 0, [50, 60, 70, 80])  # TTFT 50, gaps 10,10,10, E2E 80, TPOT 30/3 = 10
    b = record(1, 100, [200, 240, 300], tokens=5)  # TTFT 100, gaps 40,60, E2E 200, TPOT 100/4 = 25
    s = summarize([a, b], "x", {"load_level": "c2"})
    m = s.metrics
    assert m["ttft_ms"].mean == pytest.approx(75) and m["ttft_ms"].min == pytest.approx(50)
    assert m["itl_ms"].count == 5  # pooled over all chunks: 3 + 2 gaps
    assert m["itl_ms"].mean == pytest.approx((10 + 10 + 10 + 40 + 60) / 5)
    assert m["tpot_ms"].count == 2 and m["tpot_ms"].mean == pytest.approx((10 + 25) / 2)
    assert m["e2e_ms"].max == pytest.approx(200)
    # TPOT is per request while ITL is per chunk: a request with few large chunks weighs less in ITL.
    assert m["tpot_ms"].mean != pytest.approx(m["itl_ms"].mean)
    assert s.duration_s == pytest.approx(0.3)  # last end (300 ms) - first send (0 ms)
    assert s.output_token_throughput == pytest.approx((4 + 5) / 0.3)
    assert s.request_throughput == pytest.approx(2 / 0.3)
    assert s.output_token_throughput_per_user == pytest.approx((1 / 0.010 + 1 / 0.025) / 2)


def test_one_output_token_has_no_tpot_but_counts_elsewhere():
    single = record(0, 0, [40], tokens=1)
    s = summarize([single], "x", {})
    assert single.tpot_s is None
    assert s.metrics["tpot_ms"].count == 0 and s.metrics["tpot_ms"].mean is None
    assert s.metrics["ttft_ms"].p50 == pytest.approx(40) and s.metrics["itl_ms"].count == 0
    assert s.num_completed == 1 and s.total_output_tokens == 1
    assert meets_slos(single.latencies_ms(), {"tpot_ms": 1.0})  # no TPOT: a TPOT SLO does not fail it
    assert not meets_slos(single.latencies_ms(), {"ttft_ms": 39.0})  # (vLLM's rule)


def test_percentiles_match_linear_interpolation_and_std_is_population():
    samples = [1.0, 2.0, 3.0, 4.0, 10.0]
    d = Distribution.of(samples)
    assert d.p50 == 3.0
    assert d.p90 == pytest.approx(4 + 0.6 * 6)  # rank 0.9 * 4 = 3.6 between 4 and 10
    assert d.p99 == pytest.approx(4 + 0.96 * 6)
    assert d.std == pytest.approx(np.std(samples)) and d.std != pytest.approx(np.std(samples, ddof=1))
    assert (d.min, d.max, d.count) == (1.0, 10.0, 5)
    assert Distribution.of([]).p99 is None


def test_goodput_counts_requests_within_every_slo():
    fast = record(0, 0, [50, 60, 70])  # TTFT 50, TPOT 10, E2E 70
    slow_first = record(1, 0, [300, 310, 320])  # TTFT 300
    slow_tokens = record(2, 0, [50, 150, 250])  # TPOT 100
    records = [fast, slow_first, slow_tokens]
    s = summarize(records, "x", {}, slo_ms=parse_goodput("ttft:200,tpot:50"))
    assert s.goodput_fraction == pytest.approx(1 / 3)
    assert s.goodput == pytest.approx(1 / s.duration_s)
    assert summarize(records, "x", {}, slo_ms=parse_goodput("e2e:260")).goodput_fraction == pytest.approx(
        2 / 3
    )
    assert summarize(records, "x", {}).goodput is None


def test_errors_and_cancelled_requests_are_counted_not_dropped():
    ok = record(0, 0, [50, 60])
    failed = record(1, 0, [], error="HTTP 500: boom")
    failed.end_time = 100.01
    empty = record(2, 0, [])  # the stream ended without any text
    empty.end_time = 100.02
    cancelled = record(3, 0, [30], cancelled=True)
    s = summarize([ok, failed, empty, cancelled], "x", {})
    assert (s.num_requests, s.num_completed, s.num_errors, s.num_cancelled) == (4, 1, 2, 1)
    assert s.errors == {"HTTP 500: boom": 1, "no chunks streamed": 1}
    assert s.metrics["ttft_ms"].count == 1  # only the completed request enters the latencies
    assert s.to_json()["num_errors"] == 2


def test_token_count_mismatch_above_one_percent_is_flagged():
    same = record(0, 0, [10, 20])
    same.output_tokens_tokenizer = 2
    off = record(1, 0, [10, 20], tokens=100)
    off.output_tokens_tokenizer = 98
    assert summarize([same, off], "x", {}).token_count_mismatches == 1


def test_summary_json_has_the_documented_keys():
    data = summarize([record(0, 0, [10, 20, 30])], "fp8-tp1", {"load_level": "c1"}).to_json()
    for key in ("label", "config", "num_completed", "num_errors", "duration_s", "request_throughput",
                "output_token_throughput"):  # fmt: skip
        assert key in data
    assert set(data["metrics"]) == {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"}
    for stats in data["metrics"].values():
        assert {"mean", "std", "min", "max", "p50", "p90", "p95", "p99"} <= set(stats)


@pytest.mark.parametrize("spec", ["ttft", "ttft:abc", "latency:100", "tpot:-5", "e2e:0"])
def test_bad_goodput_specs_are_rejected(spec):
    with pytest.raises(SwallowTrtError):
        parse_goodput(spec)


def test_goodput_spec_accepts_vllm_names():
    assert parse_goodput("ttft:200,tpot:50,e2el:5000") == {"ttft_ms": 200, "tpot_ms": 50, "e2e_ms": 5000}


def test_server_counts_read_per_response_or_cumulative_whichever_fits_the_text():
    assert read_server_counts([1, 1, 1, 1], tokenizer_count=4) == (4, "per-response")
    assert read_server_counts([1, 2, 3, 4], tokenizer_count=4) == (4, "cumulative")
    assert read_server_counts([2, 3, 2], tokenizer_count=7) == (7, "per-response")
    assert read_server_counts([5], tokenizer_count=5) == (5, "per-response")
    assert read_server_counts([1, 2, 3], tokenizer_count=None) == (6, "per-response")
