"""plan --predict / --slo (trt_build/plan/predict). The `predictor` tests run NVIDIA AIConfigurator 0.12.0 in
its own venv (`make predictor`, built here; a failure to build fails loudly) and call it as few times as
possible (each call loads its kernel databases); the rest need no venv: a missing one, a fake one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.metrics.published import PublishedCase, published_tokens_per_s
from trt_build.build.llmapi_options import compose_options, cuda_graph_batch_sizes, kv_cache_fraction
from trt_build.cli.plan import plan as plan_command
from trt_build.common.gpus import PROFILES
from trt_build.plan.deployment import PREDICTED_METRICS, load_choice
from trt_build.plan.planner import PlanRequest, plan_for
from trt_build.plan.predict.bridge import PREDICTOR_ENV, Answer, Query, ask
from trt_build.plan.predict.predict import predict
from trt_build.plan.predict.slo import Candidate, SearchResult, choice, search
from trt_build.plan.targets import scenario_options_request

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"8b": "Llama-3.1-Swallow-8B-Instruct-v0.5", "70b": "Llama-3.3-Swallow-70B-Instruct-v0.4"}


def scenario(size: str, gpu: str, quant: str = "fp8", tp: int = 1, kv: str = "fp8"):
    request = PlanRequest(MODELS[size], gpu, quant=quant, kv_cache_dtype=kv, tp=tp, target="pytorch")
    return plan_for(request).scenario


def run_plan(*args: str):
    return CliRunner().invoke(plan_command, ["--model", MODELS["8b"], "--target", "pytorch", *args])


@pytest.fixture
def no_predictor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    missing = tmp_path / "no-such-venv"
    monkeypatch.setenv(PREDICTOR_ENV, str(missing))
    return missing


# ---------------------------------------------------------------- no venv needed


def test_kv_fraction_modelled_is_the_one_the_options_write() -> None:
    for gpu in ("h100", "h200", "l40s", "l4"):
        s = scenario("8b", gpu, quant="none", kv="auto")
        written = compose_options(scenario_options_request(s)).options["kv_cache_config"]
        query = Query(s.arch, s.gpu, s.quant, False, 1000, 1000, ())
        assert query.kv_fraction == written["free_gpu_memory_fraction"] == kv_cache_fraction(PROFILES[gpu])
    assert kv_cache_fraction(PROFILES["l40s"]) == 0.85 and kv_cache_fraction(PROFILES["h100"]) == 0.9


def test_without_the_predictor_venv_plan_works_and_says_how_to_add_it(no_predictor: Path) -> None:
    prediction = predict(scenario("8b", "h100"), 1000, 1000)
    assert prediction.metrics == {} and str(no_predictor) in prediction.unavailable
    assert "make predictor" in prediction.fix
    result = run_plan("--gpu", "h100", "--quant", "fp8", "--predict", "--isl", "1000", "--osl", "1000")
    assert result.exit_code == 0, result.output
    assert "KV tokens that fit" in result.output  # the memory plan, as today
    assert "no estimate" in result.output and "make predictor" in result.output


@pytest.mark.parametrize(
    ("gpu", "quant", "kv", "reason"),
    [
        ("l4", "fp8", "fp8", "not among the predictor's systems"),
        ("a10g", "none", "auto", "not among the predictor's systems"),
        ("h100-pcie", "fp8", "auto", "not among the predictor's systems"),
        ("a100-80g", "none", "auto", "TensorRT-LLM 1.0"),
        ("h100", "int4_awq", "auto", "INT4-AWQ has no measured GEMM data"),
    ],
)
def test_outside_the_predictors_data_says_so_and_gives_no_number(
    no_predictor: Path, gpu: str, quant: str, kv: str, reason: str
) -> None:
    prediction = predict(scenario("8b", gpu, quant=quant, kv=kv), 1000, 1000)
    assert reason in prediction.unavailable and "outside the predictor's data" in prediction.unavailable
    assert prediction.metrics == {}
    assert "memory plan" in prediction.fix


def test_out_of_data_cli_shows_the_memory_plan_and_no_number(no_predictor: Path) -> None:
    result = run_plan(
        "--gpu", "l4", "--quant", "fp8", "--predict", "--isl", "1000", "--osl", "1000", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kv_tokens"] > 0  # the memory plan
    assert data["prediction"]["estimate"] is False and data["prediction"]["metrics"] is None
    assert "l4 is not among the predictor's systems" in data["prediction"]["unavailable"]


@pytest.mark.parametrize(
    ("slo", "named"),
    [("ttft=abc,tpot=30", "'ttft=abc'"), ("ttft=500,latency=3", "'latency=3'"), ("ttft=-5", "'ttft=-5'")],
)
def test_bad_slo_is_a_usage_error_naming_the_part(slo: str, named: str) -> None:
    result = run_plan("--gpu", "h200", "--slo", slo, "--gpus", "8", "--isl", "1000", "--osl", "500")
    assert result.exit_code == 2 and named in result.output, result.output


def test_predict_and_slo_options_are_checked() -> None:
    assert "need --isl and --osl" in run_plan("--gpu", "h200", "--predict").output
    assert "go with --slo" in run_plan("--gpu", "h200", "--gpus", "8").output
    both = run_plan(
        "--gpu", "h200", "--slo", "ttft=1", "--gpus", "8", "--users", "3", "--isl", "1", "--osl", "1"
    )
    assert both.exit_code == 2 and "exactly one of --gpus N or --users N" in both.output


FAKE_POINT = {
    "ttft_ms": 100.0,
    "tpot_ms": 10.0,
    "tokens_per_s_per_user": 100.0,
    "tokens_per_s_per_gpu": 5000.0,
    "tokens_per_s": 5000.0,
    "requests_per_s": 5.0,
    "concurrency": 50.0,
    "gpus": 1,
    "memory_gb": 70.0,
    "batch": 50,
    "kv_fits": True,
}


def test_predict_json_shape_through_the_bridge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fake predictor venv answers what worker.py answers: the bridge and --json carry it whole."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    reply = {"aiconfigurator": "0.12.0", "results": [{"data_version": "1.3.0rc20", "points": [FAKE_POINT]}]}
    python.write_text(f"#!/bin/sh\ncat > {tmp_path}/request.json\necho '{json.dumps(reply)}'\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(PREDICTOR_ENV, str(python.parent.parent))
    args = ("--gpu", "h200", "--quant", "fp8", "--kv-cache-dtype", "fp8", "--tp", "1", "--predict")
    result = run_plan(*args, "--isl", "1000", "--osl", "1000", "--concurrency", "50", "--json")
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.output)["prediction"]
    assert prediction["estimate"] is True and set(prediction["metrics"]) == set(PREDICTED_METRICS)
    assert prediction["batch"] == 50 and prediction["kv_fits"] is True and prediction["concurrency"] == 50
    assert prediction["predictor"]["data_version"] == "TensorRT-LLM 1.3.0rc20 on h200_sxm"
    assert "15 %" in prediction["predictor"]["margin"]
    sent = json.loads((tmp_path / "request.json").read_text())["requests"][0]
    assert sent["system"] == "h200_sxm" and sent["free_gpu_memory_fraction"] == 0.9
    assert sent["kvcache_quant_mode"] == "fp8" and sent["points"] == [
        {"mode": "agg", "tp": 1, "pp": 1, "batch": 50}
    ]
    # the temporary model (config.json, hf_quant_config.json) is gone after the call
    assert not Path(sent["model_dir"]).exists()


def test_choice_carries_the_modelled_batch_tp_roles_and_kv_share(tmp_path: Path) -> None:
    s = scenario("70b", "h200")
    point = {
        "mode": "disagg",
        "prefill": {"tp": 2, "workers": 1, "batch": 1},
        "decode": {"tp": 4, "workers": 1, "batch": 96},
    }
    best = Candidate(point, FAKE_POINT | {"concurrency": 96.0, "batch": 96}, unit_gpus=6, replicas=1)
    answer = Answer("0.12.0", "1.3.0rc20", "h200_sxm", 0.9, [])
    result = SearchResult({"ttft_ms": 500.0}, [best], [best], answer, gpus=6, users=None)
    chosen = choice(s, 1000, 500, result, MODELS["70b"])
    chosen.save(tmp_path / "choice.json")
    loaded = load_choice(tmp_path / "choice.json")
    assert loaded.roles == chosen.roles and loaded.mode == "disagg" and loaded.total_gpus == 6
    decode = loaded.role("decode")
    assert (decode.tp, decode.max_batch_size, loaded.role("prefill").max_num_tokens) == (4, 96, 1000)
    graphs = cuda_graph_batch_sizes(decode.max_batch_size)
    assert len(set(graphs)) == len(graphs) and max(graphs) == 96
    assert loaded.kv_cache_free_gpu_memory_fraction == 0.9 and set(loaded.predicted) == set(PREDICTED_METRICS)


# ---------------------------------------------------------------- the real predictor


@pytest.fixture(scope="session")
def predictor() -> None:
    """Builds the predictor venv (idempotent; `make predictor`) and points the bridge at it."""
    built = subprocess.run(["make", "-s", "predictor"], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, (
        f"make predictor failed (the predictor tests cannot run):\n{built.stderr[-3000:]}"
    )
    os.environ.pop(PREDICTOR_ENV, None)


ACCURACY_CASES = [
    *(
        PublishedCase("8b", gpu, "fp8", 1, isl, osl)
        for gpu in ("h100", "h200")
        for isl, osl in ((1000, 1000), (2048, 2048), (5000, 500))
    ),
    *(
        PublishedCase("70b", gpu, "fp8", tp, isl, osl)
        for gpu, tp in (("h200", 1), ("h100", 2))
        for isl, osl in ((1000, 1000), (2048, 2048))
    ),
]


@pytest.mark.predictor
def test_max_throughput_within_20_percent_of_nvidias_published_figures(predictor: None) -> None:
    queries = []
    for case in ACCURACY_CASES:
        s = scenario(case.size, case.gpu, tp=case.tp)
        point = {"mode": "agg", "tp": case.tp, "pp": 1, "batch": None}
        queries.append(Query(s.arch, s.gpu, s.quant, True, case.isl, case.osl, (point,)))
    answers = ask(queries)  # one predictor call for the whole table
    rows, ratios = [], []
    for case, answer in zip(ACCURACY_CASES, answers, strict=True):
        predicted = answer.points[0]["tokens_per_s"]
        published = published_tokens_per_s(case)
        ratios.append(predicted / published)
        rows.append(
            f"{case.size:>4} {case.gpu} TP{case.tp} {case.isl}/{case.osl:<5} {predicted:>9,.0f} {published:>9,} "
            f"{ratios[-1]:.2f}  (batch {answer.points[0]['batch']})"
        )
    print("\ncase                     predicted published ratio\n" + "\n".join(rows))
    assert all(0.8 <= r <= 1.2 for r in ratios), rows


@pytest.mark.predictor
def test_slo_search_70b_on_8_h200_meets_the_slo_and_its_choice_round_trips(
    predictor: None, tmp_path: Path
) -> None:
    s = scenario("70b", "h200")
    bounds = {"ttft_ms": 500.0, "tpot_ms": 30.0}
    result = search(s, 1000, 500, bounds, gpus=8, users=None)
    assert all(unit.metrics["gpus"] == unit.unit_gpus for unit in result.all_units)  # each its own TP
    best = result.best
    assert best is not None and best.gpus <= 8
    predicted = best.predicted()
    assert predicted["ttft_ms"] <= 500 and predicted["tpot_ms"] <= 30
    assert all(c.predicted()["tokens_per_s"] <= predicted["tokens_per_s"] for c in result.ranked)
    chosen = choice(s, 1000, 500, result, MODELS["70b"])
    chosen.save(tmp_path / "choice.json")
    loaded = load_choice(tmp_path / "choice.json")
    assert loaded.roles == best.roles(1000) and loaded.total_gpus == best.gpus
    assert [(r.role, r.tp, r.max_batch_size) for r in loaded.roles] == [
        (r.role, r.tp, r.max_batch_size) for r in chosen.roles
    ]
    assert loaded.predicted == predicted and loaded.kv_cache_free_gpu_memory_fraction == 0.9
    assert replace(loaded, predicted={}) == replace(chosen, predicted={})
