"""`swallow-trt report` renders REPORT.md and PNG plots from several results directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.metrics import results
from benchmarks.metrics.summary import RequestRecord, summarize
from trt_build.cli.bench import report
from trt_build.common.errors import SwallowTrtError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_level(label: str, level: str, concurrency: int, ttft_ms: float, gap_ms: float) -> tuple:
    """Records of `concurrency` x 3 requests with 5 tokens each at the given timing."""
    records = []
    for i in range(concurrency * 3):
        send = 100.0 + (i // concurrency) * (ttft_ms + 4 * gap_ms) / 1e3
        chunks = [send + (ttft_ms + k * gap_ms + i % 3) / 1e3 for k in range(5)]
        records.append(RequestRecord(i, send, chunks, chunks[-1], 5, "server", input_tokens=16))
    config = {"protocol": "grpc", "dataset": "synthetic", "isl": 16, "osl": 5, "load_level": level,
              "load": {"kind": "concurrency", "value": concurrency, "max_concurrency": None}}  # fmt: skip
    return records, summarize(records, label, config, slo_ms={"ttft_ms": 60})


def write_sweep(directory: Path, label: str, ttft_ms: float, gap_ms: float) -> None:
    levels = []
    for concurrency in (1, 4):
        records, summary = fake_level(label, f"c{concurrency}", concurrency, ttft_ms, gap_ms)
        results.write_level(directory / f"c{concurrency}", summary, records)
        levels.append((f"c{concurrency}", summary))
    results.write_index(directory, label, levels, partial=False)


def test_report_compares_two_builds(tmp_path):
    write_sweep(tmp_path / "fp8", "fp8-tp1", ttft_ms=50, gap_ms=10)
    write_sweep(tmp_path / "int4", "int4-tp1", ttft_ms=70, gap_ms=8)
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(tmp_path / "fp8"), str(tmp_path / "int4"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "REPORT.md").read_text()
    table = [
        line
        for line in text.splitlines()
        if line.startswith("| fp8-tp1 | c") or line.startswith("| int4-tp1 | c")
    ]
    assert len(table) == 4  # two builds x two load levels
    fp8_c1 = next(line for line in table if line.startswith("| fp8-tp1 | c1 |"))
    cells = [cell.strip() for cell in fp8_c1.strip("|").split("|")]
    assert cells[2:4] == ["3", "0"]  # completed, errors
    assert cells[7].split(" / ")[0] == "51.0"  # TTFT p50: 50 ms + the 0/1/2 ms spread
    assert "Goodput SLOs (ms): ttft_ms≤60" in text
    for png in ("throughput_vs_latency.png", "ttft_distribution.png", "itl_distribution.png"):
        assert f"]({png})" in text
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    assert json.loads((out / "manifest.json").read_text())["labels"] == ["fp8-tp1", "int4-tp1"]


def test_single_level_directories_and_repeated_labels(tmp_path):
    for name in ("a", "b"):
        records, summary = fake_level("same", "c2", 2, 40, 10)
        results.write_level(tmp_path / name, summary, records)
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "REPORT.md").read_text()
    assert "| same | c2 |" in text and "| same (b) | c2 |" in text


def test_not_a_results_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SwallowTrtError, match="not a benchmark results directory"):
        results.read_results(tmp_path / "empty")


def test_the_itl_plot_spreads_gaps_over_decades(tmp_path, monkeypatch):
    # gaps of 0 (one read), 1 ms and 5 s: on a linear axis everything but the stall sits in its first pixel
    import matplotlib.pyplot as plt

    from benchmarks.report import compare

    record = RequestRecord(0, 100.0, [100.1, 100.1, 100.101, 105.101], 105.101, 4, "server")
    config = {"load_level": "c1", "load": {"kind": "concurrency", "value": 1, "max_concurrency": None}}
    results.write_level(tmp_path / "a", summarize([record], "a", config), [record])
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    assert compare.plot_distribution(compare.collect([tmp_path / "a"]), "itl_ms", "ITL", tmp_path / "itl.png")
    axis = drawn[0].axes[0]
    assert axis.get_xscale() == "log"
    low, high = axis.get_xlim()
    assert low <= compare.LOG_FLOOR_MS and high >= 5000  # the zero gap and the stall both on the axis
