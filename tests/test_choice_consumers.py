"""What consumes a deployment choice (plan/deployment.py): `build --target pytorch --choice`, the Japanese
units of `plan --isl-chars`, and `report --prediction`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.load.datasets import JA_CHAT
from benchmarks.metrics import results
from benchmarks.metrics.summary import RequestRecord, summarize
from benchmarks.report import prediction
from tests.test_bench_report import PNG_MAGIC, write_sweep
from tests.test_pytorch_target import EIGHT_B, build, options_of, write_modelopt_dir
from trt_build.build.choice import options_request_for_role
from trt_build.cli import bench as bench_cli
from trt_build.cli.bench import report
from trt_build.cli.plan import plan as plan_command
from trt_build.common.errors import SwallowTrtError
from trt_build.formats.kinds import HF_CHECKPOINT, CheckpointKind
from trt_build.plan import japanese_units
from trt_build.plan.deployment import DeploymentChoice, RoleChoice

PREDICTED = {
    "ttft_ms": 200.0,
    "tpot_ms": 20.0,
    "tokens_per_s_per_user": 50.0,
    "tokens_per_s_per_gpu": 1600.0,
    "tokens_per_s": 3200.0,
    "requests_per_s": 3.2,
    "concurrency": 64,
}

FP8 = CheckpointKind(HF_CHECKPOINT, "FP8", None)
FP8_WITH_FP8_KV = CheckpointKind(HF_CHECKPOINT, "FP8", "FP8")


def make_choice(roles: tuple[RoleChoice, ...] | None = None, **fields) -> DeploymentChoice:
    """8B FP8 on H200 at TP2, batch 96: settings no default has, so each must come from the choice."""
    roles = roles or (RoleChoice("agg", workers=1, tp=2, pp=1, max_batch_size=96, max_num_tokens=4096),)
    values = dict(
        model="Llama-3.1-Swallow-8B-Instruct-v0.5",
        gpu="h200",
        quant="fp8",
        kv_cache_dtype="fp8",
        max_seq_len=4096,
        kv_cache_free_gpu_memory_fraction=0.8,
        roles=roles,
        isl=1000,
        osl=1000,
        predicted=PREDICTED,
        predictor={"name": "aiconfigurator", "version": "0.12.0", "margin": "±15 %"},
    )
    return DeploymentChoice(**(values | fields))


def saved(choice: DeploymentChoice, path: Path) -> Path:
    choice.save(path)
    return path


@pytest.fixture
def fp8_checkpoint(tmp_path: Path) -> Path:
    return write_modelopt_dir(tmp_path / "ckpt-fp8", EIGHT_B, "FP8")


# ---------------------------------------------------------------- build --choice


def test_build_choice_writes_exactly_the_choice(tmp_path, fp8_checkpoint):
    choice = saved(make_choice(), tmp_path / "choice.json")
    deploy = tmp_path / "deploy"
    result = build("--checkpoint", str(fp8_checkpoint), "--output", str(deploy), "--target", "pytorch",
                   "--choice", str(choice))  # fmt: skip
    assert result.exit_code == 0, result.output
    options = options_of(deploy)
    assert (options["tensor_parallel_size"], options["pipeline_parallel_size"]) == (2, 1)
    assert (options["max_batch_size"], options["max_num_tokens"], options["max_seq_len"]) == (96, 4096, 4096)
    assert options["kv_cache_config"]["free_gpu_memory_fraction"] == 0.8  # not the rule's 0.9
    assert options["kv_cache_config"]["dtype"] == "fp8"
    assert options["cuda_graph_config"]["batch_sizes"] == [1, 2, 4, 8, 16, 32, 64, 96]  # none above the batch
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert manifest["gpu_profile"]["name"] == "h200"
    assert manifest["choice"]["file"] == str(choice.resolve())
    assert (
        manifest["choice"]["predicted"] == PREDICTED
        and manifest["choice"]["roles"][0]["max_batch_size"] == 96
    )


def test_build_choice_accepts_flags_that_agree(tmp_path, fp8_checkpoint):
    choice = saved(make_choice(), tmp_path / "choice.json")
    result = build("--checkpoint", str(fp8_checkpoint), "--output", str(tmp_path / "d"), "--target", "pytorch",
                   "--choice", str(choice), "--gpu", "H200", "--tp", "2", "--max-batch-size", "96")  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--tp", "1"], "--tp 1 (the choice has 2)"),
        (["--max-batch-size", "256"], "--max-batch-size 256 (the choice has 96)"),
        (["--gpu", "h100"], "--gpu h100 (the choice has h200)"),
        (["--kv-cache-dtype", "auto"], "--kv-cache-dtype auto (the choice has fp8)"),
    ],
)
def test_build_choice_refuses_contradicting_flags(tmp_path, fp8_checkpoint, flags, said):
    choice = saved(make_choice(), tmp_path / "choice.json")
    deploy = tmp_path / "deploy"
    result = build("--checkpoint", str(fp8_checkpoint), "--output", str(deploy), "--target", "pytorch",
                   "--choice", str(choice), *flags)  # fmt: skip
    assert result.exit_code == 2 and said in result.output and "Drop those flags" in result.output
    assert "Traceback" not in result.output and not deploy.exists()


def test_build_choice_refuses_a_disaggregated_choice(tmp_path, fp8_checkpoint):
    roles = (
        RoleChoice("prefill", workers=2, tp=1, pp=1, max_batch_size=4, max_num_tokens=8192),
        RoleChoice("decode", workers=1, tp=2, pp=1, max_batch_size=128, max_num_tokens=512),
    )
    choice = saved(make_choice(roles), tmp_path / "choice.json")
    result = build("--checkpoint", str(fp8_checkpoint), "--output", str(tmp_path / "d"), "--target", "pytorch",
                   "--choice", str(choice))  # fmt: skip
    assert result.exit_code == 2
    assert f"deploy it with `swallow-trt deploy dynamo --choice {choice}`" in result.output.lower()


def test_build_choice_refuses_another_quantization_and_the_engine_target(tmp_path, fp8_checkpoint):
    choice = saved(make_choice(quant="int4_awq"), tmp_path / "choice.json")
    result = build("--checkpoint", str(fp8_checkpoint), "--output", str(tmp_path / "d"), "--target", "pytorch",
                   "--choice", str(choice))  # fmt: skip
    assert (
        result.exit_code == 1 and "quant_algo is FP8" in result.output and "--quant int4_awq" in result.output
    )
    result = build(
        "--checkpoint", str(fp8_checkpoint), "--output", str(tmp_path / "d"), "--choice", str(choice)
    )
    assert result.exit_code == 2 and "--target pytorch" in result.output
    result = build(
        "--checkpoint", str(fp8_checkpoint), "--output", str(tmp_path / "d"), "--target", "pytorch"
    )
    assert result.exit_code == 2 and "--gpu is required" in result.output


def test_build_choice_refuses_a_malformed_choice(tmp_path, fp8_checkpoint):
    bad = tmp_path / "choice.json"
    bad.write_text(json.dumps(make_choice().to_dict() | {"kv_cache_free_gpu_memory_fraction": 1.5}))
    deploy = tmp_path / "deploy"
    result = build("--checkpoint", str(fp8_checkpoint), "--output", str(deploy), "--target", "pytorch",
                   "--choice", str(bad))  # fmt: skip
    assert (
        result.exit_code == 1
        and f"{bad}: kv_cache_free_gpu_memory_fraction 1.5 is not in (0, 1)" in result.output
    )
    assert "Traceback" not in result.output and not deploy.exists()


def test_options_request_for_each_role():
    roles = (
        RoleChoice("prefill", workers=2, tp=1, pp=1, max_batch_size=4, max_num_tokens=8192),
        RoleChoice("decode", workers=1, tp=2, pp=1, max_batch_size=128, max_num_tokens=512),
    )
    choice = make_choice(roles)
    decode = options_request_for_role(choice, "decode", EIGHT_B, FP8)
    prefill = options_request_for_role(choice, "prefill", EIGHT_B, FP8)
    assert (decode.tp, decode.max_batch_size, decode.max_num_tokens) == (2, 128, 512)
    assert (prefill.tp, prefill.max_batch_size, prefill.max_num_tokens) == (1, 4, 8192)
    assert decode.kv_cache_free_gpu_memory_fraction == prefill.kv_cache_free_gpu_memory_fraction == 0.8
    assert decode.gpu.name == "h200" and decode.kv_cache_dtype == "fp8"
    with pytest.raises(SwallowTrtError, match="no 'agg' role"):
        options_request_for_role(choice, "agg", EIGHT_B, FP8)
    with pytest.raises(SwallowTrtError, match="FP8 KV cache"):
        options_request_for_role(make_choice(kv_cache_dtype="auto"), "agg", EIGHT_B, FP8_WITH_FP8_KV)


# ---------------------------------------------------------------- Japanese units


@pytest.fixture
def units_cache(tmp_path, monkeypatch, tokenizer_dir):
    """The ratio cache in tmp_path; the offline tokenizer from its usual place."""
    monkeypatch.setenv("SWALLOW_TRT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(japanese_units, "ensure_tokenizer", lambda: tokenizer_dir)
    return tmp_path / "cache" / "japanese-units"


def test_chars_per_token_is_measured_on_the_ja_chat_set(units_cache, tokenizer, monkeypatch):
    texts = [
        message["content"]
        for line in JA_CHAT.read_text(encoding="utf-8").splitlines()
        for message in json.loads(line)["messages"]
    ]
    characters = sum(len(text) for text in texts)
    tokens = sum(len(tokenizer.encode(text, add_special_tokens=False)) for text in texts)
    ratio = japanese_units.measure()
    assert (ratio.characters, ratio.tokens, ratio.texts) == (characters, tokens, len(texts))
    assert ratio.ratio == pytest.approx(characters / tokens) and 1.0 < ratio.ratio < 3.0  # Japanese: ~1.5
    assert ratio.tokens_for(2000) == -(-2000 * tokens // characters)  # rounded up
    assert len(list(units_cache.glob("*.json"))) == 1
    # the same tokenizer and set come from the cache; another set is measured again
    monkeypatch.setattr("tokenizers.Tokenizer.from_file", lambda path: pytest.fail("measured again"))
    assert japanese_units.measure() == ratio
    other = units_cache.parent / "other.jsonl"
    other.write_text(json.dumps({"prompt": "東京"}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        japanese_units.measure(prompt_set=other)


def test_plan_states_the_conversion(units_cache):
    ratio = japanese_units.measure()
    args = ["--model", "Llama-3.1-Swallow-8B-Instruct-v0.5", "--gpu", "h100", "--isl-chars", "2000"]
    result = CliRunner().invoke(plan_command, args)
    assert result.exit_code == 0, result.output
    tokens = ratio.tokens_for(2000)
    assert result.output.startswith(
        f"ISL 2000 characters = {tokens} tokens at {ratio.ratio:.3f} chars/token (measured on "
        f"{ratio.texts} texts of benchmarks/load/data/ja_chat.jsonl"
    )
    assert "on 1 x h100" in result.output  # the plan follows
    result = CliRunner().invoke(plan_command, [*args, "--osl-chars", "300", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["lengths"]["isl"]["tokens"] == tokens and data["lengths"]["osl"]["characters"] == 300
    assert data["lengths"]["isl"]["chars_per_token"] == pytest.approx(ratio.ratio)
    assert data["gpu"]  # still the plan's own object


def test_bench_takes_isl_in_characters(units_cache, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(bench_cli, "run_bench", lambda options: seen.append(options) or "ran")
    ratio = japanese_units.measure()
    args = ["--url", "127.0.0.1:1", "--output", str(tmp_path / "r"), "--isl-chars", "1000"]
    result = CliRunner().invoke(bench_cli.bench, args)
    assert result.exit_code == 0, result.output
    assert seen[0].isl == ratio.tokens_for(1000) and "ISL 1000 characters" in result.output
    recorded = seen[0].lengths_in_characters["isl"]  # goes into the results' config
    assert (recorded["characters"], recorded["tokens"]) == (1000, seen[0].isl)
    result = CliRunner().invoke(bench_cli.bench, [*args, "--isl", "64"])
    assert result.exit_code == 2 and "--isl and --isl-chars" in result.output and len(seen) == 1


# ---------------------------------------------------------------- report --prediction


def matching_level(concurrency: int, ttft_ms: float, gap_ms: float, isl: int = 1000, osl: int = 1000):
    """`concurrency` x 2 requests of `osl` output tokens each, streamed as a first and a last chunk."""
    records = []
    for i in range(concurrency * 2):
        send = 100.0 + (i // concurrency) * 20.0
        chunks = [send + ttft_ms / 1e3, send + (ttft_ms + (osl - 1) * gap_ms) / 1e3]
        records.append(RequestRecord(i, send, chunks, chunks[-1], osl, "server", input_tokens=isl))
    return records


def write_matching_sweep(directory: Path, label: str, engine_dir: Path) -> None:
    levels = []
    for concurrency in (1, 4):
        name = f"c{concurrency}"
        config = {"protocol": "trtllm-bench (in process)", "dataset": "synthetic", "isl": 1000, "osl": 1000,
                  "engine_dir": str(engine_dir), "load_level": name,
                  "load": {"kind": "concurrency", "value": concurrency, "max_concurrency": None}}  # fmt: skip
        records = matching_level(concurrency, ttft_ms=150 + 50 * concurrency, gap_ms=10 + concurrency)
        summary = summarize(records, label, config)
        results.write_level(directory / name, summary, records)
        levels.append((name, summary))
    results.write_index(directory, label, levels, partial=False)


def fake_deployment(directory: Path, gpu: str, tp: int) -> Path:
    directory.mkdir()
    manifest = {"target": "pytorch", "gpu_profile": {"name": gpu}, "tp": tp, "pp": 1}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def report_rows(text: str, heading: str) -> dict[str, list[str]]:
    """Metric -> [measured, predicted, ratio] of the table under `heading`."""
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = [
        line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Metric")
    ]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}


def test_report_puts_measurements_beside_the_prediction(tmp_path):
    write_matching_sweep(tmp_path / "fp8", "fp8-tp1", fake_deployment(tmp_path / "deploy", "h200", 1))
    agg = (RoleChoice("agg", workers=1, tp=1, pp=1, max_batch_size=4, max_num_tokens=8192),)
    choice = saved(make_choice(agg, predicted=PREDICTED | {"concurrency": 4}), tmp_path / "choice.json")
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(tmp_path / "fp8"), "--output", str(out),
                                         "--prediction", f"fp8-tp1={choice}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (out / "REPORT.md").read_text()
    assert "Level compared: c4: the predicted concurrency 4." in text
    assert "Same configuration: ISL 1000, OSL 1000, GPU h200, TP 1 PP 1." in text
    assert "Not the same configuration" not in text
    c4 = json.loads((tmp_path / "fp8" / "c4" / "summary.json").read_text())
    rows = report_rows(text, "### fp8-tp1 against")
    expected = {
        "TTFT mean (ms)": (c4["metrics"]["ttft_ms"]["mean"], PREDICTED["ttft_ms"]),  # 350 ms measured
        "TPOT / ITL mean (ms)": (c4["metrics"]["tpot_ms"]["mean"], PREDICTED["tpot_ms"]),  # 14 ms
        "output tok/s": (c4["output_token_throughput"], PREDICTED["tokens_per_s"]),
        "output tok/s per GPU": (c4["output_token_throughput"] / 1, PREDICTED["tokens_per_s_per_gpu"]),
        "tok/s per user": (c4["output_token_throughput_per_user"], PREDICTED["tokens_per_s_per_user"]),
        "requests/s": (c4["request_throughput"], PREDICTED["requests_per_s"]),
    }
    assert set(rows) == set(expected)
    for name, (measured, predicted) in expected.items():
        assert rows[name][0] == f"{measured:,.2f}" and rows[name][1] == f"{predicted:,.2f}"
        assert rows[name][2].split()[0] == f"{measured / predicted:,.2f}"
    assert rows["TTFT mean (ms)"][2] == "1.75 ⚠"  # 350 / 200: outside the ±15 % band
    assert rows["TPOT / ITL mean (ms)"][0] == "14.00"
    assert "NVIDIA published for 8B / h200 / fp8 / TP 1 / ISL 1000 / OSL 1000: 17,744 output tok/s" in text
    assert f"]({prediction.PLOT})" in text
    assert (out / prediction.PLOT).read_bytes().startswith(PNG_MAGIC)
    assert json.loads((out / "manifest.json").read_text())["predictions"] == {"fp8-tp1": str(choice)}


def test_report_states_mismatches_and_the_nearest_level(tmp_path):
    write_sweep(tmp_path / "served", "served", ttft_ms=50, gap_ms=10)  # ISL 16 / OSL 5, c1 and c4, served
    write_matching_sweep(tmp_path / "tp2", "tp2", fake_deployment(tmp_path / "deploy", "h100", 2))
    choice = saved(make_choice(predicted=PREDICTED | {"concurrency": 3}), tmp_path / "choice.json")  # TP 2
    agg = (RoleChoice("agg", workers=1, tp=1, pp=1, max_batch_size=4, max_num_tokens=8192),)
    tp1 = saved(make_choice(agg, predicted=PREDICTED | {"concurrency": 1}), tmp_path / "tp1.json")
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(tmp_path / "served"), str(tmp_path / "tp2"), "--output", str(out),
                                         "--prediction", f"served={choice}", "--prediction", f"tp2={tp1}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (out / "REPORT.md").read_text()
    served = text.split("### served against", 1)[1].split("### tp2 against", 1)[0]
    assert (
        "Level compared: c4: the nearest measured concurrency to the predicted 3 (measured: c1, c4)."
        in served
    )
    assert (
        "ISL 16 measured, 1000 predicted; OSL 5 measured, 1000 predicted; GPU and TP are not recorded"
        in served
    )
    assert "NVIDIA published: none published for 8B / h200 / fp8 / TP 2 / ISL 1000 / OSL 1000." in served
    tp2 = text.split("### tp2 against", 1)[1]
    assert "Level compared: c1: the predicted concurrency 1." in tp2
    assert (
        "⚠ Not the same configuration: GPU h100 measured, h200 predicted; TP 2 PP 1 measured, TP 1 PP 1"
        in tp2
    )
    c1 = json.loads((tmp_path / "tp2" / "c1" / "summary.json").read_text())
    assert "Measured per-GPU figures divide by 2 GPUs." in tp2  # the measured build's TP, not the choice's
    rows = report_rows(text, "### tp2 against")
    assert rows["output tok/s per GPU"][0] == f"{c1['output_token_throughput'] / 2:,.2f}"
    assert (out / prediction.PLOT).is_file()


def test_report_prediction_refusals(tmp_path):
    write_sweep(tmp_path / "a", "a", ttft_ms=50, gap_ms=10)
    choice = saved(make_choice(), tmp_path / "choice.json")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        report, [str(tmp_path / "a"), "--output", str(out), "--prediction", f"b={choice}"]
    )
    assert result.exit_code == 1 and "no results directory has the label 'b' (labels: a)" in result.output
    result = CliRunner().invoke(
        report, [str(tmp_path / "a"), "--output", str(out), "--prediction", str(choice)]
    )
    assert result.exit_code == 2 and "use LABEL=FILE" in result.output
    result = CliRunner().invoke(
        report, [str(tmp_path / "a"), "--output", str(out), "--prediction", "a=nope.json"]
    )
    assert result.exit_code == 1 and "nope.json does not exist" in result.output
    assert not out.exists()
