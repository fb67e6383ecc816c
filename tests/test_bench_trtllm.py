"""Engine-level mode: the trtllm-bench commands and dataset (everywhere), the real tool (GPU hosts)."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from benchmarks.bench import command as bench
from benchmarks.trtllm_bench import compose, supported_flags


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
    for flag in ("throughput", "--engine_dir", "--eos_id -1", "--streaming", "--report_json"):
        assert flag in commands[0]


def test_rate_mode_is_refused(tmp_path):
    result = CliRunner().invoke(bench, ["--engine-dir", str(tmp_path), "--request-rate", "2", "--dry-run",
                                        "--output", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code != 0 and "no request-rate mode" in result.output


def test_options_unknown_to_the_installed_version_are_dropped(tmp_path):
    supported = {"--engine_dir", "--dataset", "--concurrency", "--num_requests", "--streaming"}
    command = compose("m", None, tmp_path / "e", tmp_path / "d.jsonl", 4, 10, 2, tmp_path / "c4", supported)
    assert "--backend" not in command and "--report_json" not in command
    assert command[command.index("--concurrency") + 1] == "4"


@pytest.mark.gpu
def test_installed_trtllm_bench_accepts_the_composed_flags(tmp_path):
    supported = supported_flags()
    assert supported is not None, "trtllm-bench is not on PATH"
    for flag in (
        "--engine_dir",
        "--dataset",
        "--concurrency",
        "--num_requests",
        "--streaming",
        "--report_json",
    ):
        assert flag in supported
    help_text = subprocess.run(["trtllm-bench", "--help"], capture_output=True, text=True, timeout=300).stdout
    assert "--model" in help_text and "throughput" in help_text
