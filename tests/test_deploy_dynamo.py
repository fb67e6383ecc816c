"""`swallow-trt deploy dynamo`: golden deployment directories (8B FP8 TP1 x 4, 70B FP8 TP8 on one node, 70B
BF16 TP16 on two nodes), prefill / decode options, refusals, the scripts' syntax and Ctrl-C behaviour, and
the DynamoGraphDeployment checked by ai-dynamo 1.6.1's own code (tests/peer/dynamo_dgd_check.py).

Regenerate the golden files with SWALLOW_TRT_UPDATE_GOLDEN=1 (then read the diff).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dynamo_deploy.files.k8s import resource_name
from dynamo_deploy.request import DeployRequest, agg_roles, request_from_choice
from dynamo_deploy.roles import RoleOptions, forbidden_combinations
from dynamo_deploy.spec import read_deployment
from dynamo_deploy.write import deploy_dynamo
from tests.test_pytorch_target import EIGHT_B, SEVENTY_B, write_modelopt_dir
from trt_build.cli import main as cli_main
from trt_build.common.errors import SwallowTrtError
from trt_build.common.gpus import get_profile
from trt_build.plan.deployment import DeploymentChoice, RoleChoice

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "dynamo"
UPDATE = os.environ.get("SWALLOW_TRT_UPDATE_GOLDEN") == "1"

# case -> (checkpoint name, architecture, quant_algo, deploy arguments)
CASES = {
    "8b-fp8-tp1x4": ("Llama-3.1-Swallow-8B-Instruct-v0.5-FP8", EIGHT_B, "FP8", ["--replicas", "4"]),
    "70b-fp8-tp8": ("Llama-3.3-Swallow-70B-Instruct-v0.4-FP8", SEVENTY_B, "FP8", ["--tp", "8"]),
    "70b-bf16-tp16": ("Llama-3.3-Swallow-70B-Instruct-v0.4", SEVENTY_B, None, ["--tp", "16"]),
}


def deploy(*args: str):
    return CliRunner().invoke(cli_main, ["deploy", "dynamo", *args])


def checkpoint(tmp_path: Path, case: str) -> Path:
    name, arch, quant, _ = CASES[case]
    return write_modelopt_dir(tmp_path / "ckpt" / name, arch, quant)


def written(deploy_dir: Path, ckpt: Path) -> dict[str, str]:
    """Every file but the manifest, with the machine's paths replaced by placeholders."""
    files = {}
    for path in sorted(deploy_dir.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            text = path.read_text(encoding="utf-8")
            text = text.replace(str(ckpt.resolve()), "<CHECKPOINT>").replace(
                str(deploy_dir.resolve()), "<DEPLOY>"
            )
            files[str(path.relative_to(deploy_dir))] = text
    return files


def k8s_documents(deploy_dir: Path) -> dict[str, dict]:
    docs = yaml.safe_load_all((deploy_dir / "k8s" / "deployment.yaml").read_text())
    return {d["kind"]: d for d in docs}


def components(deploy_dir: Path) -> dict[str, dict]:
    return {c["name"]: c for c in k8s_documents(deploy_dir)["DynamoGraphDeployment"]["spec"]["components"]}


@pytest.fixture(scope="module")
def golden_dirs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each golden case deployed once: case -> (checkpoint, deployment directory)."""
    out = {}
    for case, (_, _, _, args) in CASES.items():
        base = tmp_path_factory.mktemp(case)
        ckpt = checkpoint(base, case)
        result = deploy("--checkpoint", str(ckpt), "--output", str(base / "deploy"), "--gpu", "h100", *args)
        assert result.exit_code == 0, result.output
        out[case] = (ckpt, base / "deploy")
    return out


@pytest.mark.parametrize("case", CASES)
def test_golden_files(golden_dirs, case):
    ckpt, deploy_dir = golden_dirs[case]
    files = written(deploy_dir, ckpt)
    golden = GOLDEN / case
    if UPDATE:
        for name, text in files.items():
            (golden / name).parent.mkdir(parents=True, exist_ok=True)
            (golden / name).write_text(text, encoding="utf-8")
    expected = {
        str(p.relative_to(golden)): p.read_text(encoding="utf-8") for p in golden.rglob("*") if p.is_file()
    }
    assert sorted(files) == sorted(expected)
    for name in files:
        assert files[name] == expected[name], f"{case}/{name} differs from {golden / name}"


@pytest.mark.parametrize(
    ("case", "workers", "tp", "nodes", "gpus_per_pod"),
    [("8b-fp8-tp1x4", 4, 1, None, "1"), ("70b-fp8-tp8", 1, 8, None, "8"), ("70b-bf16-tp16", 1, 16, 2, "8")],
)
def test_files_hold_the_chosen_numbers(golden_dirs, case, workers, tp, nodes, gpus_per_pod):
    _, deploy_dir = golden_dirs[case]
    worker = components(deploy_dir)["worker"]
    assert worker["replicas"] == workers and worker.get("multinode", {}).get("nodeCount") == nodes
    container = worker["podTemplate"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus_per_pod
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == str(tp)
    options = yaml.safe_load((deploy_dir / "options" / "agg.yaml").read_text())
    assert options["tensor_parallel_size"] == tp
    # the ConfigMap mounted into the workers holds exactly the options file
    config_map = k8s_documents(deploy_dir)["ConfigMap"]
    assert config_map["data"]["agg.yaml"] == (deploy_dir / "options" / "agg.yaml").read_text()
    sbatch = (deploy_dir / "slurm" / "dynamo.sbatch").read_text()
    assert f"#SBATCH --nodes={nodes or 1}" in sbatch
    assert sbatch.count("python3 -m dynamo.trtllm") == workers
    spec = read_deployment(deploy_dir)
    assert spec.role("agg").workers == workers and spec.role("agg").tp == tp and spec.mode == "agg"
    assert Path(spec.checkpoint).is_absolute() and (deploy_dir / spec.role("agg").options_file).is_file()


@pytest.mark.parametrize("case", CASES)
def test_scripts_parse_as_bash(golden_dirs, case):
    _, deploy_dir = golden_dirs[case]
    for script in ("local/launch.sh", "slurm/dynamo.sbatch"):
        path = deploy_dir / script
        assert os.access(path, os.X_OK)
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_two_node_worker_runs_in_one_mpi_world_and_not_locally(golden_dirs):
    _, deploy_dir = golden_dirs["70b-bf16-tp16"]
    sbatch = (deploy_dir / "slurm" / "dynamo.sbatch").read_text()
    step = next(line for line in sbatch.splitlines() if "dynamo.trtllm" in line)
    assert "--nodes=2 --ntasks-per-node=8" in step and "--mpi=pmix" in step and "trtllm-llmapi-launch" in step
    result = subprocess.run(["bash", str(deploy_dir / "local" / "launch.sh")], capture_output=True, text=True)
    assert result.returncode == 2 and "16 GPUs on 2 nodes" in result.stderr


def deploy_dir_for(tmp_path: Path, *args: str, case: str = "8b-fp8-tp1x4") -> Path:
    out = tmp_path / "deploy"
    result = deploy("--checkpoint", str(checkpoint(tmp_path, case)), "--output", str(out), *args)
    assert result.exit_code == 0, result.output
    return out


def test_disaggregated_roles_differ_as_dynamo_examples_do(tmp_path):
    out = deploy_dir_for(
        tmp_path, "--mode", "disagg", "--prefill-workers", "2", "--decode-tp", "2", "--max-batch-size", "48"
    )
    prefill = yaml.safe_load((out / "options" / "prefill.yaml").read_text())
    decode = yaml.safe_load((out / "options" / "decode.yaml").read_text())
    assert prefill["disable_overlap_scheduler"] is True and prefill["cuda_graph_config"] is None
    assert "disable_overlap_scheduler" not in decode
    assert decode["cuda_graph_config"]["batch_sizes"] == [1, 2, 4, 8, 16, 32, 48]
    for options in (prefill, decode):
        assert options["cache_transceiver_config"]["max_tokens_in_buffer"] == options["max_seq_len"]
    assert prefill["kv_cache_config"] == decode["kv_cache_config"]  # one KV fraction, one dtype
    assert (prefill["tensor_parallel_size"], decode["tensor_parallel_size"]) == (1, 2)
    graph = components(out)
    assert (graph["prefill"]["type"], graph["decode"]["type"], graph["prefill"]["replicas"]) == (
        "prefill",
        "decode",
        2,
    )
    launch = (out / "local" / "launch.sh").read_text()
    devices = [line.split()[0] for line in launch.splitlines() if line.startswith("CUDA_VISIBLE_DEVICES=")]
    assert devices == ["CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1", "CUDA_VISIBLE_DEVICES=2,3"]
    workers = [line for line in launch.splitlines() if "dynamo.trtllm" in line]
    assert all("--publish-kv-events" in w for w in workers if "prefill" in w)
    assert not any("--publish-kv-events" in w for w in workers if "mode decode" in w)
    assert read_deployment(out).mode == "disagg"


def test_host_and_router_reach_the_launch_script(tmp_path):
    out = deploy_dir_for(tmp_path, "--host", "0.0.0.0", "--router", "round-robin", "--replicas", "2")
    launch = (out / "local" / "launch.sh").read_text()
    assert 'HOST="${HOST:-0.0.0.0}"' in launch and "--router-mode round-robin" in launch
    assert "--publish-kv-events" not in launch


def fake_tools(bin_dir: Path, log: Path, failing_gpu: str = "no such GPU") -> None:
    """`nvidia-smi` listing 8 GPUs, and a `python3` that records itself and sleeps like a server (the worker
    on `failing_gpu` exits with status 3 once the frontend and both workers have started)."""
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text('#!/bin/sh\nfor i in 0 1 2 3 4 5 6 7; do echo "GPU $i: fake"; done\n')
    (bin_dir / "python3").write_text(
        f'#!/bin/bash\necho "$$ ${{CUDA_VISIBLE_DEVICES:-none}} $2" >> {log}\n'
        f'if [ "${{CUDA_VISIBLE_DEVICES:-}}" = "{failing_gpu}" ]; then\n'
        f'  while [ "$(wc -l < {log})" -lt 3 ]; do sleep 0.05; done\n  exit 3\nfi\nexec sleep 300\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_launch_stops_every_process_it_started(tmp_path, sig):
    out = deploy_dir_for(tmp_path, "--replicas", "2")
    log = tmp_path / "started.log"
    fake_tools(tmp_path / "bin", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    launch = subprocess.Popen(["bash", str(out / "local" / "launch.sh")], env=env, stderr=subprocess.PIPE)
    try:
        for _ in range(200):  # until the frontend and both workers have started
            if log.exists() and len(log.read_text().splitlines()) == 3:
                break
            time.sleep(0.05)
        started = [line.split() for line in log.read_text().splitlines()]
        assert sorted(s[1:] for s in started) == [
            ["0", "dynamo.trtllm"],
            ["1", "dynamo.trtllm"],
            ["none", "dynamo.frontend"],
        ]
        launch.send_signal(sig)
        assert launch.wait(timeout=60) == (130 if sig == signal.SIGINT else 143)
        assert not [pid for pid, *_ in started if alive(int(pid))]
    finally:
        if launch.poll() is None:
            launch.kill()
        launch.stderr.close()


def test_refuses_what_cannot_run_and_writes_nothing(tmp_path):
    fp8 = checkpoint(tmp_path, "70b-fp8-tp8")
    out = tmp_path / "deploy"
    cases = [
        (
            ["--checkpoint", str(fp8), "--gpu", "a100-80g", "--tp", "8"],
            1,
            "FP8 weights need FP8 tensor cores",
        ),
        (["--checkpoint", str(fp8), "--tp", "4", "--pp", "3"], 1, "not a multiple of 8"),
        (["--checkpoint", str(fp8), "--tp", "12"], 1, "does not split 64 attention heads"),
        (["--checkpoint", str(fp8), "--mode", "disagg", "--replicas", "2"], 2, "--prefill-workers"),
        (["--checkpoint", str(fp8), "--decode-workers", "2"], 2, "only for --mode disagg"),
    ]
    for args, status, message in cases:
        result = deploy(*args, "--output", str(out))
        assert result.exit_code == status and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    trt = tmp_path / "trt"
    trt.mkdir()
    (trt / "config.json").write_text(json.dumps({"architecture": "LlamaForCausalLM"}))
    (trt / "rank0.safetensors").write_bytes(b"")
    result = deploy("--checkpoint", str(trt), "--output", str(out))
    assert result.exit_code == 1 and "TRT-LLM checkpoint (engine target)" in result.output
    result = deploy("--checkpoint", str(fp8), "--output", str(out), "--tp", "8", "--dry-run")
    assert (
        result.exit_code == 0
        and "options/agg.yaml" in result.output
        and "tensor_parallel_size: 8" in result.output
    )
    assert not out.exists() and not list(tmp_path.glob(".deploy*"))


def test_existing_output_needs_overwrite(tmp_path):
    out = deploy_dir_for(tmp_path)
    ckpt = tmp_path / "ckpt" / CASES["8b-fp8-tp1x4"][0]
    result = deploy("--checkpoint", str(ckpt), "--output", str(out), "--replicas", "2")
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert read_deployment(out).role("agg").workers == 1
    assert (
        deploy("--checkpoint", str(ckpt), "--output", str(out), "--replicas", "2", "--overwrite").exit_code
        == 0
    )
    assert read_deployment(out).role("agg").workers == 2


def testforbidden_combinations_option_combinations_are_refused():
    def role(name: str, **options) -> RoleOptions:
        base = {"max_batch_size": 8, "max_seq_len": 4096, "kv_cache_config": {"dtype": "auto"}}
        return RoleOptions(RoleChoice(name, 1, 1, 1, 8, 512), base | options)

    transceiver = {"cache_transceiver_config": {"max_tokens_in_buffer": 4096}}
    good = [role("prefill", disable_overlap_scheduler=True, **transceiver), role("decode", **transceiver)]
    assert forbidden_combinations(good) == []
    found = forbidden_combinations(
        [
            role("prefill", cache_transceiver_config={"max_tokens_in_buffer": 1024}),
            role(
                "decode", kv_cache_config={"dtype": "fp8"}, cuda_graph_config={"batch_sizes": [1, 8, 8, 16]}
            ),
        ]
    )
    assert len(found) == 4
    assert "disable_overlap_scheduler" in found[0] and "max_tokens_in_buffer 1024" in found[1]
    assert "repeat or exceed max_batch_size 8" in found[2] and "KV cache dtypes differ" in found[3]


def test_a_saved_choice_maps_onto_the_request(tmp_path):
    roles = (RoleChoice("prefill", 2, 1, 1, 16, 8192), RoleChoice("decode", 1, 2, 1, 64, 512))
    choice = DeploymentChoice("8b", "h200", "fp8", "auto", 4096, 0.8, roles)
    ckpt = checkpoint(tmp_path, "8b-fp8-tp1x4")
    request = request_from_choice(choice, ckpt, tmp_path / "deploy", router="round-robin")
    assert (request.mode, request.gpu.name, request.total_gpus, request.router) == (
        "disagg",
        "h200",
        4,
        "round-robin",
    )
    deploy_dynamo(request)
    for name, batch in (("prefill", 16), ("decode", 64)):
        options = yaml.safe_load((tmp_path / "deploy" / "options" / f"{name}.yaml").read_text())
        assert options["kv_cache_config"]["free_gpu_memory_fraction"] == 0.8
        assert (options["max_batch_size"], options["max_seq_len"]) == (batch, 4096)
    manifest = json.loads((tmp_path / "deploy" / "manifest.json").read_text())
    assert manifest["target"] == "dynamo" and manifest["total_gpus"] == 4


def test_library_refusal_is_a_swallow_trt_error(tmp_path):
    ckpt = checkpoint(tmp_path, "70b-fp8-tp8")
    request = DeployRequest(ckpt, tmp_path / "deploy", get_profile("h100"), agg_roles(1, 4, 3, 8, 512))
    with pytest.raises(SwallowTrtError, match="spans nodes"):
        deploy_dynamo(request)


def test_dynamo_accepts_the_graphs(dynamo_env, golden_dirs, tmp_path):
    """ai-dynamo's typed DGD model, its multinode rule and its own argument parsers, and the Kubernetes
    client's pod types, accept every graph; and the check is not a rubber stamp: a wrong nodeCount and a
    misspelt key are caught."""
    disagg = deploy_dir_for(tmp_path, "--mode", "disagg", "--decode-tp", "2")
    dirs = [str(d) for _, d in golden_dirs.values()] + [str(disagg)]
    check = [str(dynamo_env), str(ROOT / "tests" / "peer" / "dynamo_dgd_check.py"), "8"]
    result = subprocess.run([*check, *dirs], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    checked = json.loads(result.stdout)["checked"]
    big = checked[str(golden_dirs["70b-bf16-tp16"][1])]["components"]["worker"]
    assert (big["tp"], big["multinode"]) == (16, {"nodeCount": 2})
    assert checked[str(disagg)]["components"]["decode"]["mode"] == "decode"
    k8s = disagg / "k8s" / "deployment.yaml"
    k8s.write_text(
        k8s.read_text().replace(
            "  - name: decode\n", "  - name: decode\n    multinode:\n      nodeCount: 2\n"
        )
    )
    k8s.write_text(k8s.read_text().replace("volumeMounts:", "volumeMount:", 1))
    result = subprocess.run([*check, str(disagg)], capture_output=True, text=True, timeout=300)
    problems = json.loads(result.stdout)["problems"]
    assert result.returncode == 1 and len(problems) == 2
    assert "not a Kubernetes V1PodTemplateSpec" in problems[0] and "Dynamo's rule says None" in problems[1]


def test_kubernetes_names_are_short_labels_that_stay_apart():
    long_fp8, long_bf16 = "Llama-3.3-Swallow-70B-Instruct-v0.4-FP8", "Llama-3.3-Swallow-70B-Instruct-v0.4"
    assert resource_name("Swallow-8B") == "swallow-8b" and resource_name("日本語") == "swallow"
    names = [resource_name(long_fp8), resource_name(long_bf16)]
    assert names[0] != names[1]
    assert all(len(n) <= 32 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in names)


def test_launch_stops_the_graph_when_one_process_dies(tmp_path):
    out = deploy_dir_for(tmp_path, "--replicas", "2")
    log = tmp_path / "started.log"
    fake_tools(tmp_path / "bin", log, failing_gpu="1")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    launch = out / "local" / "launch.sh"
    result = subprocess.run(["bash", str(launch)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "stopping the others" in result.stderr
    started = [line.split() for line in log.read_text().splitlines()]
    assert len(started) == 3 and not [pid for pid, *_ in started if alive(int(pid))]


def test_deploy_choice_refuses_flags_it_sets_and_another_quantization(tmp_path):
    roles = (RoleChoice("agg", 2, 1, 1, 64, 4096),)
    path = tmp_path / "choice.json"
    DeploymentChoice("8b", "h200", "fp8", "auto", 4096, 0.9, roles).save(path)
    fp8 = checkpoint(tmp_path, "8b-fp8-tp1x4")
    given = deploy(
        "--checkpoint", str(fp8), "--output", str(tmp_path / "a"), "--choice", str(path), "--tp", "2"
    )
    assert given.exit_code == 2 and "sets --tp" in given.output, given.output
    bf16 = write_modelopt_dir(tmp_path / "bf16", EIGHT_B, None)
    other = deploy("--checkpoint", str(bf16), "--output", str(tmp_path / "b"), "--choice", str(path))
    assert other.exit_code == 1 and "predicted for --quant fp8" in other.output, other.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    done = deploy("--checkpoint", str(fp8), "--output", str(tmp_path / "c"), "--choice", str(path))
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert (
        manifest["choice"]["roles"][0]["workers"] == 2 and manifest["deployment"]["roles"][0]["workers"] == 2
    )
