"""Engine-level mode: the trtllm-bench commands and dataset, the conversion of its output into our results and\nthe report beside a served run (everywhere, with a stand-in for trtllm-bench), the real tool (GPU hosts)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from benchmarks.engine_level.trtllm_bench import bench_target, compose, supported_flags
from benchmarks.engine_level.trtllm_results import convert_level
from benchmarks.metrics import results
from benchmarks.metrics.summary import RequestRecord, summarize
from tests.trtllm_bench_standin import BASE_NS, FAKE_TRTLLM_BENCH, standin_report, standin_request_record
from trt_build.cli import main as cli
from trt_build.cli.bench import bench, report
from trt_build.common.errors import SwallowTrtError


def test_dry_run_writes_exact_length_token_dataset_and_commands(tmp_path):
    out = tmp_path / "trt"
    args = ["--engine-dir", str(tmp_path / "engine"), "--model", "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3",
            "--concurrency", "1,8", "--num-requests", "6", "--isl", "40", "--osl", "16", "--dry-run",
            "--output", str(out)]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["input_ids"]) == 40 and r["output_tokens"] == 16 for r in rows)
    commands = (out / "commands.sh").read_text().splitlines()[2:]
    assert len(commands) == 2
    assert "--concurrency 1 " in commands[0] and "--concurrency 8 " in commands[1]
    assert commands[1].startswith(f"mkdir -p {out / 'c8'} && trtllm-bench ")  # it does not create the dir
    for flag in ("throughput", "--engine_dir", "--eos_id -1", "--streaming", "--report_json"):
        assert flag in commands[0]


def test_rate_mode_is_refused(tmp_path):
    result = CliRunner().invoke(bench, ["--engine-dir", str(tmp_path), "--request-rate", "2", "--dry-run",
                                        "--output", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code != 0 and "no request-rate mode" in result.output


def test_engine_mode_needs_the_model_id(tmp_path):
    result = CliRunner().invoke(
        bench, ["--engine-dir", str(tmp_path), "--dry-run", "--output", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "--model is required with --engine-dir" in result.output
    assert not (tmp_path / "o").exists()


def test_options_unknown_to_the_installed_version_are_dropped(tmp_path):
    supported = {"--engine_dir", "--dataset", "--concurrency", "--num_requests", "--streaming"}
    target = bench_target(tmp_path / "e", None, dry_run=True)
    command = compose("m", target, tmp_path / "d.jsonl", 4, 10, 2, tmp_path / "c4", supported)
    assert "--backend" not in command and "--report_json" not in command
    assert command[command.index("--concurrency") + 1] == "4"


def test_a_pytorch_deployment_runs_on_the_pytorch_backend_with_its_options(tmp_path, tiny_model_dir):
    deploy = tmp_path / "deploy"
    args = ["build", "--checkpoint", str(tiny_model_dir), "--output", str(deploy), "--gpu", "h100", "--target",
            "pytorch", "--tp", "2"]  # fmt: skip
    built = CliRunner().invoke(cli, args)
    assert built.exit_code == 0, built.output
    out = tmp_path / "bench"
    result = CliRunner().invoke(bench, ["--engine-dir", str(deploy), "--concurrency", "4", "--num-requests", "3",
                                        "--isl", "16", "--osl", "8", "--dry-run", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = shlex.split((out / "commands.sh").read_text().splitlines()[2].split(" && ", 1)[1])
    value = lambda flag: command[command.index(flag) + 1]  # noqa: E731
    assert value("--model_path") == str(tiny_model_dir.resolve()) and value("--model") == tiny_model_dir.name
    assert value("--backend") == "pytorch" and (value("--tp"), value("--pp")) == ("2", "1")
    assert value("--extra_llm_api_options") == str((deploy / "llm_api_options.yaml").resolve())
    assert "--engine_dir" not in command
    # --backend stays even where an installed --help does not list it: the default differs by release
    target = bench_target(deploy, None, dry_run=False)
    kept = compose("m", target, tmp_path / "d.jsonl", 4, 3, 2, tmp_path / "c4", {"--dataset"})
    assert "--backend" in kept and "--extra_llm_api_options" in kept and "--tp" not in kept


# --- trtllm-bench output -> our results -------------------------------------------------------------------
# trtllm-bench needs a GPU, so these tests feed the converter a STAND-IN for its output, written in the
# upstream format (field names, one JSON array, nanosecond perf_counter timestamps) as read in
# NVIDIA/TensorRT-LLM tensorrt_llm/bench/dataclasses/{statistics,reporting}.py (see trtllm_results.py).


def write_standin(level_dir: Path, rows: list[dict], report: dict | None) -> None:
    level_dir.mkdir(parents=True, exist_ok=True)
    (level_dir / "trtllm_requests.json").write_text(json.dumps(rows))  # one line, as trtllm-bench writes it
    if report is not None:
        (level_dir / "trtllm_report.json").write_text(json.dumps(report, indent=4))


LEVEL_CONFIG = {"protocol": "trtllm-bench (in process)", "isl": 40, "osl": 10, "warmup": 2, "load_level": "c4",
                "load": {"kind": "concurrency", "value": 4, "max_concurrency": None}}  # fmt: skip


def test_converter_metrics_match_hand_computed_values(tmp_path):
    # Listed out of start order (trtllm-bench lists by request id); the converter orders by start.
    rows = [
        standin_request_record(3, start_ms=2, ttft_ms=25, tpot_ms=10, tokens=5),  # e2e 65, ends at 67
        standin_request_record(1, start_ms=0, ttft_ms=20, tpot_ms=5, tokens=10),  # e2e 65, ends at 65
        standin_request_record(2, start_ms=1, ttft_ms=30, tpot_ms=6, tokens=10),  # e2e 84, ends at 85
    ]
    write_standin(tmp_path / "c4", rows, standin_report(rows))
    summary = convert_level(tmp_path / "c4", "fp8-engine", LEVEL_CONFIG, requested_output_tokens=10)

    assert (summary.num_requests, summary.num_completed, summary.num_errors) == (3, 3, 0)
    assert summary.duration_s == pytest.approx(0.085)  # last end 85 ms - first start 0 ms
    assert summary.request_throughput == pytest.approx(3 / 0.085)
    assert summary.output_token_throughput == pytest.approx(25 / 0.085)
    assert (summary.total_input_tokens, summary.total_output_tokens) == (120, 25)
    ttft, tpot, e2e = (summary.metrics[name] for name in ("ttft_ms", "tpot_ms", "e2e_ms"))
    assert (ttft.mean, ttft.p50, ttft.min, ttft.max) == pytest.approx((25, 25, 20, 30))
    assert (tpot.mean, tpot.p50) == pytest.approx((7, 6))  # (E2E - TTFT) / (tokens - 1): 5, 6, 10
    assert (e2e.mean, e2e.p50, e2e.max) == pytest.approx((214 / 3, 65, 84))
    assert e2e.p90 == pytest.approx(65 + 0.8 * (84 - 65))  # interpolated, as our served runs
    assert summary.output_token_throughput_per_user == pytest.approx((200 + 1000 / 6 + 100) / 3)
    assert summary.metrics["itl_ms"].count == 0 and summary.metrics["itl_ms"].p50 is None

    data = json.loads((tmp_path / "c4" / "summary.json").read_text())
    assert data["source"] == "trtllm-bench"
    assert data["metrics"]["itl_ms"]["mean"] is None and "itl_ms is empty" in data["notes"][0]
    assert data["label"] == "fp8-engine" and data["config"]["load_level"] == "c4"
    assert data["trtllm"]["version"] == "1.2.1" and data["trtllm"]["quantization"] == "FP8"
    assert all(check["ok"] for check in data["cross_check"].values()) and len(data["cross_check"]) == 5
    assert data["raw_files"] == ["trtllm_report.json", "trtllm_requests.json"]
    assert "in process" in data["definitions"]["ttft_ms"]

    lines = [json.loads(line) for line in (tmp_path / "c4" / "requests.jsonl").read_text().splitlines()]
    assert [line["send_ms"] for line in lines] == [0.0, 1.0, 2.0]
    assert [line["ttft_ms"] for line in lines] == [20.0, 30.0, 25.0]
    assert [line["e2e_ms"] for line in lines] == [65.0, 84.0, 65.0]
    assert [line["tpot_ms"] for line in lines] == [5.0, 6.0, 10.0]
    assert lines[0]["output_tokens_source"] == "engine" and lines[0]["requested_output_tokens"] == 10
    assert set(lines[0]) == set(RequestRecord(0, 0.0).to_json(0.0))  # exactly our bench's keys
    assert all(line["chunk_offsets_ms"] == [] for line in lines)  # no per-token times to invent
    csv_row = (tmp_path / "c4" / "summary.csv").read_text().splitlines()
    assert "ttft_ms_p50" in csv_row[0] and csv_row[1].startswith("fp8-engine,c4,3,0,0.085,")


def test_converter_goodput_counts_requests_within_every_slo(tmp_path):
    rows = [
        standin_request_record(1, start_ms=0, ttft_ms=20, tpot_ms=5, tokens=10),  # within both
        standin_request_record(2, start_ms=1, ttft_ms=30, tpot_ms=6, tokens=10),  # TTFT over
        standin_request_record(3, start_ms=2, ttft_ms=25, tpot_ms=10, tokens=5),  # TPOT over
        standin_request_record(4, start_ms=3, ttft_ms=22, tpot_ms=50, tokens=1),  # one token: no TPOT
    ]
    write_standin(tmp_path / "c4", rows, None)
    summary = convert_level(tmp_path / "c4", "x", LEVEL_CONFIG, slo_ms={"ttft_ms": 26, "tpot_ms": 9})
    assert summary.goodput_fraction == pytest.approx(2 / 4)
    assert summary.goodput == pytest.approx(2 / summary.duration_s)
    assert json.loads((tmp_path / "c4" / "summary.json").read_text())["slo_ms"] == {
        "ttft_ms": 26,
        "tpot_ms": 9,
    }


def test_converter_counts_errors_and_reads_older_field_names(tmp_path):
    rows = [
        standin_request_record(1, start_ms=0, ttft_ms=10, tpot_ms=2, tokens=6),
        standin_request_record(2, start_ms=0, ttft_ms=12, tpot_ms=2, tokens=6, error_tokens=1),
    ]
    for row in rows:  # an older trtllm-bench: computed field `num_output_tokens`, no `output_tokens`
        row["num_output_tokens"] = row.pop("num_total_output_tokens")
        del row["output_tokens"]
    write_standin(tmp_path / "c1", rows, None)
    summary = convert_level(tmp_path / "c1", "x", LEVEL_CONFIG)
    assert (summary.num_completed, summary.num_errors) == (1, 1)
    assert summary.errors == {"trtllm-bench: 1 error response(s)": 1}
    assert summary.metrics["ttft_ms"].mean == pytest.approx(10) and summary.total_output_tokens == 6
    data = json.loads((tmp_path / "c1" / "summary.json").read_text())
    assert (
        data["trtllm"] == {} and data["cross_check"] == {} and data["raw_files"] == ["trtllm_requests.json"]
    )


def test_without_streaming_there_is_no_ttft_or_tpot(tmp_path):
    rows = [standin_request_record(1, start_ms=0, ttft_ms=None, tpot_ms=3, tokens=8)]
    write_standin(tmp_path / "c1", rows, None)
    summary = convert_level(tmp_path / "c1", "x", LEVEL_CONFIG)
    assert summary.num_completed == 1 and summary.metrics["e2e_ms"].mean == pytest.approx(21)
    assert summary.metrics["ttft_ms"].count == 0 and summary.metrics["tpot_ms"].count == 0
    assert any(
        "without --streaming" in note
        for note in json.loads((tmp_path / "c1" / "summary.json").read_text())["notes"]
    )


def test_cross_check_flags_a_report_that_disagrees(tmp_path):
    rows = [standin_request_record(i, start_ms=i, ttft_ms=10, tpot_ms=2, tokens=4) for i in range(3)]
    report = standin_report(rows)
    report["performance"]["request_throughput_req_s"] *= 1.05  # e.g. a report from another run
    write_standin(tmp_path / "c2", rows, report)
    convert_level(tmp_path / "c2", "x", LEVEL_CONFIG)
    data = json.loads((tmp_path / "c2" / "summary.json").read_text())
    assert data["cross_check"]["request_throughput"]["ok"] is False
    assert data["cross_check"]["ttft_mean_ms"]["ok"] is True
    assert any(note.startswith("request_throughput:") for note in data["notes"])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "wrote no --request_json"),
        ('{"a": 1}', "a JSON array"),
        ('[{"id": 1}]', "lacks"),
        ("[", "Cannot read"),
    ],
)
def test_bad_trtllm_output_is_explained(tmp_path, content, message):
    (tmp_path / "c1").mkdir()
    if content is not None:
        (tmp_path / "c1" / "trtllm_requests.json").write_text(content)
    with pytest.raises(SwallowTrtError, match=message):
        convert_level(tmp_path / "c1", "x", LEVEL_CONFIG)


def served_sweep(directory: Path, label: str) -> None:
    """A served run's results (our own bench's format) at c1 and c4, 8 tokens per request."""
    levels = []
    for concurrency in (1, 4):
        records = []
        for i in range(concurrency * 2):
            send = 10.0 + (i // concurrency) * 0.2
            chunks = [send + (0.015 * concurrency + k * 0.003 * concurrency) for k in range(8)]
            records.append(RequestRecord(i, send, chunks, chunks[-1], 8, "server", input_tokens=16))
        config = {"protocol": "grpc", "dataset": "synthetic", "isl": 16, "osl": 8, "load_level": f"c{concurrency}",
                  "load": {"kind": "concurrency", "value": concurrency, "max_concurrency": None}}  # fmt: skip
        summary = summarize(records, label, config)
        results.write_level(directory / f"c{concurrency}", summary, records)
        levels.append((f"c{concurrency}", summary))
    results.write_index(directory, label, levels, partial=False)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An engine directory, with the stand-in trtllm-bench first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtllm-bench"
    fake.write_text(
        FAKE_TRTLLM_BENCH.format(python=sys.executable, tests_dir=str(Path(__file__).parent), base=BASE_NS)
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "config.json").write_text("{}")
    return engine


def test_engine_run_becomes_results_that_report_draws_beside_a_served_run(
    engine, tmp_path, monkeypatch, tokenizer_dir
):
    out = tmp_path / "engine-results"
    args = ["--engine-dir", str(engine), "--model", "m", "--tokenizer", str(tokenizer_dir), "--concurrency", "1,4",
            "--num-requests", "8", "--isl", "16", "--osl", "8", "--label", "fp8-engine", "--output", str(out)]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output

    index = json.loads((out / "index.json").read_text())
    assert [level["name"] for level in index["levels"]] == ["c1", "c4"]
    c4 = json.loads((out / "c4" / "summary.json").read_text())
    # c4: two waves of four; TTFT 40 ms, TPOT 8 ms, E2E 40 + 7 x 8 = 96 ms; duration 2 x 96 ms
    assert c4["source"] == "trtllm-bench" and c4["num_completed"] == 8
    assert c4["metrics"]["ttft_ms"]["p50"] == pytest.approx(40) and c4["metrics"]["tpot_ms"][
        "p50"
    ] == pytest.approx(8)
    assert c4["request_throughput"] == pytest.approx(8 / 0.192)
    assert c4["total_input_tokens"] == 8 * 16 and c4["total_output_tokens"] == 8 * 8
    assert all(check["ok"] for check in c4["cross_check"].values())
    for kept in ("trtllm_requests.json", "trtllm_report.json", "trtllm.log", "requests.jsonl", "summary.csv"):
        assert (out / "c4" / kept).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["converted"] == ["c1", "c4"] and manifest["not_converted"] == []

    served_sweep(tmp_path / "served", "fp8-served")
    drawn: dict[str, set[str]] = {}
    real_savefig = Figure.savefig

    def record_lines(figure, path, *a, **k):
        drawn[Path(path).name] = {line.get_label() for axis in figure.axes for line in axis.lines}
        return real_savefig(figure, path, *a, **k)

    monkeypatch.setattr(Figure, "savefig", record_lines)
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(report, [str(tmp_path / "served"), str(out), "--output", str(report_dir)])
    assert result.exit_code == 0, result.output
    assert {"fp8-served", "fp8-engine"} <= drawn["throughput_vs_latency.png"]  # one chart, both builds
    text = (report_dir / "REPORT.md").read_text()
    engine_row = next(line for line in text.splitlines() if line.startswith("| fp8-engine | c4 |"))
    assert engine_row.split("|")[9].strip() == "- / -"  # ITL p50 / p99: not measured, not faked
    assert "| fp8-served | c4 |" in text and "source: trtllm-bench" in text and "no ITL measured" in text
    # the ITL chart has the served build only; the TTFT chart has both
    assert (
        "fp8-engine (n=8)" not in drawn["itl_distribution.png"]
        and "fp8-engine (n=8)" in drawn["ttft_distribution.png"]
    )


def test_an_engine_beside_the_output_keeps_its_path(engine, tmp_path, tokenizer_dir):
    out = tmp_path / "eng"  # a prefix of the engine's path, tmp_path / "engine", as text
    args = ["--engine-dir", str(engine), "--model", "m", "--tokenizer", str(tokenizer_dir), "--concurrency", "1",
            "--num-requests", "2", "--isl", "8", "--osl", "4", "--output", str(out)]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert f"--engine_dir {engine} " in result.output
    assert json.loads((out / "c1" / "summary.json").read_text())["num_completed"] == 2


def test_a_failed_level_keeps_the_levels_measured_before_it(engine, tmp_path, monkeypatch, tokenizer_dir):

    def run(fail_at: int, out: Path):
        monkeypatch.setenv("STANDIN_FAIL_AT_CONCURRENCY", str(fail_at))
        args = ["--engine-dir", str(engine), "--model", "m", "--tokenizer", str(tokenizer_dir), "--concurrency",
                "1,4", "--num-requests", "4", "--isl", "16", "--osl", "4", "--output", str(out)]  # fmt: skip
        return CliRunner().invoke(bench, args)

    result = run(4, tmp_path / "kept")
    assert result.exit_code != 0 and "failed at c4" in result.output and "out of memory" in result.output
    assert "measured before it" in result.output
    assert json.loads((tmp_path / "kept" / "c1" / "summary.json").read_text())["num_completed"] == 4
    index = json.loads((tmp_path / "kept" / "index.json").read_text())
    assert [level["name"] for level in index["levels"]] == ["c1"] and index["partial"] is True
    assert (tmp_path / "kept" / "c4" / "trtllm.log").exists()  # the failed level's log, for the user

    result = run(1, tmp_path / "none")
    assert result.exit_code != 0 and "failed at c1" in result.output
    assert not (tmp_path / "none").exists()  # nothing measured: no output that looks like results


def test_ctrl_c_keeps_the_levels_measured_before_it(engine, tmp_path, tokenizer_dir):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trt_build.cli", "bench", "--engine-dir", str(engine), "--model", "m",
               "--tokenizer", str(tokenizer_dir), "--concurrency", "1,4", "--num-requests", "4", "--isl", "16",
               "--osl", "4", "--output", str(out)]  # fmt: skip
    env = {**os.environ, "STANDIN_HANG_AT_CONCURRENCY": "4"}  # PATH holds the stand-in (engine fixture)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               cwd=Path(__file__).parents[1])  # fmt: skip
    seen = b""
    try:
        while b"c4: trtllm-bench" not in seen:  # c1 is measured and c4 has started
            line = process.stdout.readline()
            assert line, seen.decode(errors="replace")
            seen += line
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        seen += process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
    text = seen.decode(errors="replace")
    assert process.returncode != 0 and "stopped by Ctrl-C at c4" in text and "measured before it" in text
    assert json.loads((out / "c1" / "summary.json").read_text())["num_completed"] == 4
    assert json.loads((out / "index.json").read_text())["partial"] is True
    assert not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.gpu
def test_installed_trtllm_bench_accepts_the_composed_flags(tmp_path):
    supported = supported_flags()
    assert supported is not None, "trtllm-bench is not on PATH"
    for flag in ("--dataset", "--concurrency", "--num_requests", "--streaming", "--report_json"):
        assert flag in supported
    # engines up to 1.3.0rc20; the PyTorch backend with a deployment's options YAML on every release since
    assert "--engine_dir" in supported or "--extra_llm_api_options" in supported
    help_text = subprocess.run(["trtllm-bench", "--help"], capture_output=True, text=True, timeout=300).stdout
    assert "--model" in help_text and "throughput" in help_text
