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
import yaml
from click.testing import CliRunner

from benchmarks.metrics.published import PublishedCase, published_tokens_per_s
from dynamo_deploy.spec import read_deployment
from tests.test_pytorch_target import SEVENTY_B, write_modelopt_dir
from trt_build.build.llmapi_options import compose_options, cuda_graph_batch_sizes, kv_cache_fraction
from trt_build.cli import main as cli_main
from trt_build.cli.plan import plan as plan_command
from trt_build.common.gpus import PROFILES
from trt_build.plan.deployment import PREDICTED_METRICS, load_choice
from trt_build.plan.planner import PlanRequest, plan_for
from trt_build.plan.predict.bridge import PREDICTOR_ENV, Answer, Query, ask
from trt_build.plan.predict.predict import predict
from trt_build.plan.predict.render import plot_pareto
from trt_build.plan.predict.slo import Candidate, SearchResult, choice, pareto_front, search
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


FAKE_WORKER = """#!/usr/bin/env python3
import json, shutil, sys
from pathlib import Path
here = Path(__file__).parent
request = json.load(sys.stdin)
(here / "request.json").write_text(json.dumps(request))
for number, query in enumerate(request["requests"]):
    shutil.copytree(query["model_dir"], here / f"model{number}", dirs_exist_ok=True)
reply = here / "reply.txt"
sys.stderr.write("fake predictor failed on purpose")
if reply.exists():
    print(reply.read_text())
"""


@pytest.fixture
def fake_predictor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A predictor venv whose python keeps the request and model it is sent and prints reply.txt."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_WORKER)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(PREDICTOR_ENV, str(python.parent.parent))
    return python.parent


def fake_reply(where: Path, *points: dict) -> None:
    reply = {"aiconfigurator": "0.12.0", "results": [{"data_version": "1.3.0rc20", "points": list(points)}]}
    (where / "reply.txt").write_text(json.dumps(reply))


PREDICT_8B_H200 = ("--gpu", "h200", "--quant", "fp8", "--kv-cache-dtype", "fp8", "--tp", "1", "--predict")


def test_predict_json_shape_through_the_bridge(fake_predictor: Path) -> None:
    """What worker.py answers, the bridge and --json carry whole; it is sent the model and the KV share."""
    fake_reply(fake_predictor, FAKE_POINT)
    result = run_plan(*PREDICT_8B_H200, "--isl", "1000", "--osl", "1000", "--concurrency", "50", "--json")
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.output)["prediction"]
    assert prediction["estimate"] is True and set(prediction["metrics"]) == set(PREDICTED_METRICS)
    assert prediction["batch"] == 50 and prediction["kv_fits"] is True and prediction["concurrency"] == 50
    assert prediction["predictor"]["data_version"] == "TensorRT-LLM 1.3.0rc20 on h200_sxm"
    assert "15 %" in prediction["predictor"]["margin"] and prediction["note"] is None
    sent = json.loads((fake_predictor / "request.json").read_text())["requests"][0]
    assert sent["system"] == "h200_sxm" and sent["free_gpu_memory_fraction"] == 0.9
    assert sent["kvcache_quant_mode"] == "fp8" and sent["points"] == [
        {"mode": "agg", "tp": 1, "pp": 1, "batch": 50}
    ]
    assert not Path(sent["model_dir"]).exists()  # the temporary model is gone after the call
    config = json.loads((fake_predictor / "model0" / "config.json").read_text())
    quant = json.loads((fake_predictor / "model0" / "hf_quant_config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["num_key_value_heads"]) == (
        "llama",
        32,
        8,
    )
    assert quant["quantization"]["quant_algo"] == "FP8"


def test_max_throughput_above_the_plans_batch_says_what_to_change(fake_predictor: Path) -> None:
    fake_reply(fake_predictor, FAKE_POINT | {"batch": 913, "concurrency": 913.0})
    result = run_plan(*PREDICT_8B_H200, "--isl", "1000", "--osl", "1000")
    assert result.exit_code == 0, result.output
    assert "max throughput" in result.output and "batch              913" in result.output
    assert (
        "above this plan's --max-batch-size 256" in result.output and "--max-batch-size 913" in result.output
    )
    sent = json.loads((fake_predictor / "request.json").read_text())["requests"][0]
    assert sent["points"][0]["batch"] is None  # the largest batch whose KV fits


def test_a_failing_predictor_is_reported_with_its_stderr(fake_predictor: Path) -> None:
    result = run_plan(*PREDICT_8B_H200, "--isl", "1000", "--osl", "1000")  # no reply.txt: no answer
    assert result.exit_code == 0, result.output
    assert "KV tokens that fit" in result.output and "fake predictor failed on purpose" in result.output
    slo = run_plan("--gpu", "h200", "--slo", "ttft=500", "--gpus", "2", "--isl", "1000", "--osl", "500")
    assert slo.exit_code == 1 and "fake predictor failed on purpose" in slo.output


def test_slo_without_the_predictor_venv_says_how_to_add_it(no_predictor: Path) -> None:
    result = run_plan("--gpu", "h200", "--slo", "ttft=500", "--gpus", "2", "--isl", "1000", "--osl", "500")
    assert result.exit_code == 1 and "make predictor" in result.output


def fake_estimates(points: tuple[dict, ...]) -> list[dict]:
    """Worker METRICS shaped like the real ones: bigger batches, more tok/s per GPU and slower tokens; TP
    makes tokens faster; the KV cache holds at most 256 per worker; prefill adds nothing."""
    out = []
    for p in points:
        tp, batch = (p["tp"], p["batch"]) if p["mode"] == "agg" else (p["decode"]["tp"], p["decode"]["batch"])
        workers = 1 if p["mode"] == "agg" else p["decode"]["workers"]
        gpus = tp if p["mode"] == "agg" else p["prefill"]["tp"] * p["prefill"]["workers"] + tp * workers
        tpot = (5 + batch / 8) / tp
        tokens = workers * batch * 1000 / tpot
        out.append(
            FAKE_POINT
            | {
                "ttft_ms": 100.0 + batch,
                "tpot_ms": tpot,
                "tokens_per_s_per_user": 1000 / tpot,
                "tokens_per_s": tokens,
                "tokens_per_s_per_gpu": tokens / gpus,
                "requests_per_s": tokens / 500,
                "concurrency": float(workers * batch),
                "gpus": gpus,
                "batch": batch,
                "kv_fits": batch <= 256,
            }
        )
    return out


@pytest.fixture
def fake_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    def ask(queries: list[Query]) -> list[Answer]:
        return [
            Answer("0.12.0", "1.3.0rc20", "h200_sxm", q.kv_fraction, fake_estimates(q.points))
            for q in queries
        ]

    monkeypatch.setattr("trt_build.plan.predict.slo.ask", ask)


def test_slo_search_ranks_by_the_budget_it_was_given(fake_ask: None, tmp_path: Path) -> None:
    s = scenario("8b", "h200")
    bounds = {"ttft_ms": 400.0, "tpot_ms": 20.0}
    by_gpus = search(s, 1000, 500, bounds, gpus=8, users=None)
    assert by_gpus.ranked and all(c.gpus <= 8 for c in by_gpus.ranked)
    assert all(c.metrics["kv_fits"] for c in by_gpus.all_units)  # no unit whose KV does not fit
    assert all(c.metrics["ttft_ms"] <= 400 and c.metrics["tpot_ms"] <= 20 for c in by_gpus.ranked)
    totals = [c.predicted()["tokens_per_s"] for c in by_gpus.ranked]
    assert totals == sorted(totals, reverse=True)  # the most tokens/s on 8 GPUs first
    by_users = search(s, 1000, 500, bounds, gpus=None, users=1000)
    assert by_users.ranked and by_users.best.gpus < by_users.ranked[-1].gpus
    assert all(c.predicted()["concurrency"] >= 1000 for c in by_users.ranked)
    assert [c.gpus for c in by_users.ranked] == sorted(c.gpus for c in by_users.ranked)  # fewest GPUs first
    front = pareto_front(by_gpus.all_units)
    for unit in by_gpus.all_units:  # nothing beats the front on both axes
        assert not any(
            unit.metrics["tokens_per_s_per_user"] > f.metrics["tokens_per_s_per_user"]
            and unit.metrics["tokens_per_s_per_gpu"] > f.metrics["tokens_per_s_per_gpu"]
            for f in front
        )
    plot_pareto(by_gpus, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.png"]  # no partial file left


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
    # the Dynamo deployment carries exactly its roles, workers, TP, batch, tokens and KV share
    ckpt = write_modelopt_dir(tmp_path / "70b-fp8", SEVENTY_B, "FP8", "FP8")
    deploy = tmp_path / "deploy"
    result = CliRunner().invoke(
        cli_main,
        [
            "deploy",
            "dynamo",
            "--checkpoint",
            str(ckpt),
            "--output",
            str(deploy),
            "--choice",
            str(tmp_path / "choice.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    spec = read_deployment(deploy)
    assert [(r.role, r.workers, r.tp, r.pp) for r in spec.roles] == [
        (r.role, r.workers, r.tp, r.pp) for r in loaded.roles
    ]
    for role in loaded.roles:
        options = yaml.safe_load((deploy / spec.role(role.role).options_file).read_text())
        assert (options["tensor_parallel_size"], options["max_batch_size"], options["max_num_tokens"]) == (
            role.tp,
            role.max_batch_size,
            role.max_num_tokens,
        )
        assert options["kv_cache_config"]["free_gpu_memory_fraction"] == 0.9
        assert options["max_seq_len"] == loaded.max_seq_len


def test_slo_cli_saves_the_best_and_plots_the_front(fake_ask: None, tmp_path: Path) -> None:
    args = ("--gpu", "h200", "--quant", "fp8", "--kv-cache-dtype", "fp8", "--isl", "1000", "--osl", "500")
    out = tmp_path / "choice.json"
    result = run_plan(
        *args,
        "--slo",
        "ttft=400,tpot=20",
        "--gpus",
        "8",
        "--save",
        str(out),
        "--pareto",
        str(tmp_path / "p.png"),
    )
    assert result.exit_code == 0, result.output
    assert "SLO search: ttft <= 400 ms, tpot <= 20 ms" in result.output and "Best: " in result.output
    saved = load_choice(out)
    assert saved.total_gpus <= 8 and saved.predicted["tpot_ms"] <= 20 and (tmp_path / "p.png").is_file()
    impossible = run_plan(*args, "--slo", "ttft=1", "--gpus", "8", "--save", str(tmp_path / "none.json"))
    assert impossible.exit_code == 1 and "meets the SLO" in impossible.output
    assert "SLO search" in impossible.output and not (tmp_path / "none.json").exists()
