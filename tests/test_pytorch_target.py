"""The pytorch target: --target auto, checkpoint kinds, the LLM-API options (golden), refusals, the
deployment directory, plan --target pytorch, and the trtllm-serve command."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trt_build.build.pytorch import read_deployment
from trt_build.cli.build import build as build_command
from trt_build.cli.plan import plan as plan_command
from trt_build.cli.serve import serve as serve_command
from trt_build.common import targets
from trt_build.common.errors import SwallowTrtError
from trt_build.common.targets import resolve_target, target_for_version
from trt_build.formats.kinds import checkpoint_kind
from trt_build.source.hf_config import hf_config_dict
from trt_build.source.registry import lookup

EIGHT_B = lookup("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5").architecture
SEVENTY_B = lookup("Llama-3.3-Swallow-70B-Instruct-v0.4").architecture
PRODUCER = {"name": "modelopt", "version": "0.47.0"}
IGNORE = ["lm_head", "model.embed_tokens"]
FP8_GROUP = {"num_bits": 8, "type": "float", "dynamic": False}


def write_modelopt_dir(path: Path, arch, quant_algo: str | None, kv: str | None = None) -> Path:
    """A ModelOpt unified checkpoint's configs (docs/modelopt-checkpoint.md §1); the weights are not read by build/plan."""
    path.mkdir(parents=True)
    config = hf_config_dict(arch)
    if quant_algo is not None:
        quantization = {"quant_algo": quant_algo, "kv_cache_quant_algo": kv, "exclude_modules": IGNORE}
        inline = {
            "quant_method": "modelopt",
            "quant_algo": quant_algo,
            "producer": PRODUCER,
            "ignore": IGNORE,
        }
        if quant_algo == "W4A16_AWQ":
            quantization.update(group_size=128, has_zero_point=False, pre_quant_scale=True)
        if quant_algo == "FP8":
            inline["config_groups"] = {
                "group_0": {"weights": FP8_GROUP, "input_activations": FP8_GROUP, "targets": ["Linear"]}
            }
        if quant_algo == "NVFP4":
            quantization["group_size"] = 16
            group = {"num_bits": 4, "type": "float", "group_size": 16}
            inline["config_groups"] = {"group_0": {"weights": group, "input_activations": group}}
        if kv == "FP8":
            inline["kv_cache_scheme"] = FP8_GROUP
        config["quantization_config"] = inline
        (path / "hf_quant_config.json").write_text(
            json.dumps({"producer": PRODUCER, "quantization": quantization})
        )
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"")
    return path


def build(*args: str):
    return CliRunner().invoke(build_command, list(args))


def build_deployment(checkpoint: Path, deploy: Path, *args: str) -> Path:
    """`build --target pytorch` of `checkpoint` into `deploy`, which must succeed."""
    result = build("--checkpoint", str(checkpoint), "--output", str(deploy), "--target", "pytorch", *args)
    assert result.exit_code == 0, result.output
    return deploy


def options_of(deploy: Path) -> dict:
    return yaml.safe_load((deploy / "llm_api_options.yaml").read_text())


# ---------------------------------------------------------------- --target auto


@pytest.mark.parametrize(
    ("version", "target"),
    [
        ("0.21.0", "engine"),
        ("1.2.1", "engine"),
        ("1.3.0rc15", "engine"),
        ("1.3.0rc20", "engine"),  # the last release with trtllm-build
        ("1.3.0rc21", "pytorch"),
        ("1.3.0rc22.post1", "pytorch"),
        ("1.4.0rc1", "pytorch"),
        (None, "pytorch"),  # not installed: our documented choice
    ],
)
def test_auto_target_by_version(version, target):
    assert target_for_version(version).target == target


def test_auto_says_which_and_why(monkeypatch, capsys):
    monkeypatch.setattr(targets, "installed_tensorrt_llm_version", lambda: "1.2.1")
    assert resolve_target("auto") == "engine"
    assert "--target auto: engine (tensorrt_llm 1.2.1 has trtllm-build" in capsys.readouterr().err
    monkeypatch.setattr(targets, "installed_tensorrt_llm_version", lambda: None)
    assert resolve_target("auto") == "pytorch"
    assert "no tensorrt_llm is installed" in capsys.readouterr().err
    assert resolve_target("engine") == "engine"  # explicit targets are not second-guessed
    with pytest.raises(SwallowTrtError, match="not a version"):
        target_for_version("banana")


def test_auto_drives_build(monkeypatch, tmp_path):
    hf = write_modelopt_dir(tmp_path / "hf", EIGHT_B, None)
    monkeypatch.setattr(targets, "installed_tensorrt_llm_version", lambda: "1.4.0rc1")
    result = build(
        "--checkpoint", str(hf), "--output", str(tmp_path / "d"), "--gpu", "h100", "--target", "auto"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["target"] == "pytorch"
    monkeypatch.setattr(targets, "installed_tensorrt_llm_version", lambda: "1.2.1")
    result = build(
        "--checkpoint", str(hf), "--output", str(tmp_path / "e"), "--gpu", "h100", "--target", "auto"
    )
    assert result.exit_code == 1 and "--target pytorch" in result.output  # engine target wants a TRT-LLM ckpt


# ---------------------------------------------------------------- checkpoint kinds


def test_checkpoint_kinds(tmp_path, tiny_model_dir):
    assert checkpoint_kind(tiny_model_dir).kind == "hf" and checkpoint_kind(tiny_model_dir).quant_algo is None
    fp8 = checkpoint_kind(write_modelopt_dir(tmp_path / "fp8", EIGHT_B, "FP8", "FP8"))
    assert (fp8.kind, fp8.quant_algo, fp8.kv_cache_quant_algo, fp8.target) == ("hf", "FP8", "FP8", "pytorch")
    trt = tmp_path / "trt"
    trt.mkdir()
    (trt / "config.json").write_text(json.dumps({"architecture": "LlamaForCausalLM"}))
    (trt / "rank0.safetensors").write_bytes(b"")
    assert checkpoint_kind(trt).target == "engine"
    inline_only = write_modelopt_dir(tmp_path / "inline", EIGHT_B, "FP8")
    (inline_only / "hf_quant_config.json").unlink()
    with pytest.raises(SwallowTrtError, match="no hf_quant_config.json"):
        checkpoint_kind(inline_only)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SwallowTrtError, match="config.json not found"):
        checkpoint_kind(tmp_path / "empty")


# ---------------------------------------------------------------- golden options


def cuda_graphs(*sizes):
    return {"batch_sizes": list(sizes), "enable_padding": True}


GOLDEN = [
    (
        "8B FP8 + FP8 KV on h200, TP 1",
        (EIGHT_B, "FP8", "FP8"),
        ["--gpu", "h200", "--tp", "1"],
        {
            "tensor_parallel_size": 1,
            "pipeline_parallel_size": 1,
            "max_batch_size": 256,
            "max_num_tokens": 8192,
            "max_seq_len": 8192,
            "enable_chunked_prefill": True,
            "kv_cache_config": {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": True, "dtype": "auto"},
            "cuda_graph_config": cuda_graphs(1, 2, 4, 8, 16, 32, 64, 128, 256),
        },
    ),
    (
        "70B INT4-AWQ on h100, TP 4, batch 64, 16k",
        (SEVENTY_B, "W4A16_AWQ", None),
        ["--gpu", "h100", "--tp", "4", "--max-batch-size", "64", "--max-seq-len", "16384"],
        {
            "tensor_parallel_size": 4,
            "pipeline_parallel_size": 1,
            "max_batch_size": 64,
            "max_num_tokens": 8192,
            "max_seq_len": 16384,
            "enable_chunked_prefill": True,
            "kv_cache_config": {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": True, "dtype": "auto"},
            "cuda_graph_config": cuda_graphs(1, 2, 4, 8, 16, 32, 64),
        },
    ),
    (
        "8B bf16 on l40s, TP 2 x PP 2, forced FP8 KV, batch 48",
        (EIGHT_B, None, None),
        [
            "--gpu",
            "l40s",
            "--tp",
            "2",
            "--pp",
            "2",
            "--kv-cache-dtype",
            "fp8",
            "--max-batch-size",
            "48",
            "--max-num-tokens",
            "4096",
        ],
        {
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 2,
            "max_batch_size": 48,
            "max_num_tokens": 4096,
            "max_seq_len": 8192,
            "enable_chunked_prefill": True,
            "kv_cache_config": {"free_gpu_memory_fraction": 0.85, "enable_block_reuse": True, "dtype": "fp8"},
            "cuda_graph_config": cuda_graphs(1, 2, 4, 8, 16, 32, 48),
        },
    ),
    (
        "8B NVFP4 + FP8 KV on b200, TP 1",
        (EIGHT_B, "NVFP4", "FP8"),
        ["--gpu", "b200", "--max-batch-size", "8"],
        {
            "tensor_parallel_size": 1,
            "pipeline_parallel_size": 1,
            "max_batch_size": 8,
            "max_num_tokens": 8192,
            "max_seq_len": 8192,
            "enable_chunked_prefill": True,
            "kv_cache_config": {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": True, "dtype": "auto"},
            "cuda_graph_config": cuda_graphs(1, 2, 4, 8),
        },
    ),
]


@pytest.mark.parametrize(("title", "checkpoint", "args", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_options(tmp_path, title, checkpoint, args, expected):
    source = write_modelopt_dir(tmp_path / "ckpt", *checkpoint)
    deploy = build_deployment(source, tmp_path / "deploy", *args)
    assert options_of(deploy) == expected
    assert list(options_of(deploy)) == list(expected)  # the order too: parallelism first, graphs last


def test_golden_yaml_text(tmp_path):
    source = write_modelopt_dir(tmp_path / "ckpt", EIGHT_B, "FP8", None)
    deploy = tmp_path / "deploy"
    args = ["--gpu", "h100", "--target", "pytorch", "--max-batch-size", "4", "--max-seq-len", "4096"]
    assert build("--checkpoint", str(source), "--output", str(deploy), *args).exit_code == 0
    assert (deploy / "llm_api_options.yaml").read_text() == (
        "tensor_parallel_size: 1\n"
        "pipeline_parallel_size: 1\n"
        "max_batch_size: 4\n"
        "max_num_tokens: 8192\n"
        "max_seq_len: 4096\n"
        "enable_chunked_prefill: true\n"
        "kv_cache_config:\n"
        "  free_gpu_memory_fraction: 0.9\n"
        "  enable_block_reuse: true\n"
        "  dtype: auto\n"
        "cuda_graph_config:\n"
        "  batch_sizes:\n"
        "  - 1\n"
        "  - 2\n"
        "  - 4\n"
        "  enable_padding: true\n"
    )


def test_dry_run_gives_a_reason_per_key_and_writes_nothing(tmp_path):
    source = write_modelopt_dir(tmp_path / "ckpt", EIGHT_B, None)
    result = build(
        "--checkpoint",
        str(source),
        "--output",
        str(tmp_path / "d"),
        "--gpu",
        "l40s",
        "--target",
        "pytorch",
        "--tp",
        "2",
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "d").exists()
    for key in (
        "tensor_parallel_size: 2",
        "kv_cache_config.free_gpu_memory_fraction: 0.85",
        "kv_cache_config.dtype: auto",
        "cuda_graph_config.batch_sizes",
        "enable_chunked_prefill: True",
    ):
        line = next(line for line in result.output.splitlines() if line.startswith("#") and key in line)
        assert len(line.split(": ", 2)[-1]) > 20  # a reason follows the keys
    assert "# WARNING: TP 2 on l40s (PCIe, no NVLink)" in result.output
    assert "trtllm-serve " in result.output and "--tp_size 2" in result.output


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("checkpoint", "args", "message"),
    [
        ((EIGHT_B, "NVFP4", "FP8"), ["--gpu", "h100"], "NVFP4 needs Blackwell"),
        ((EIGHT_B, "NVFP4", None), ["--gpu", "h200"], "NVFP4 needs Blackwell"),
        ((EIGHT_B, "NVFP4", None), ["--gpu", "a100-80g"], "NVFP4 needs Blackwell"),
        ((EIGHT_B, "FP8", None), ["--gpu", "a100-80g"], "FP8 weights need FP8 tensor cores"),
        ((EIGHT_B, "W4A16_AWQ", "FP8"), ["--gpu", "a100-40g"], "an FP8 KV cache needs SM >= 89"),
        ((EIGHT_B, None, None), ["--gpu", "a100-80g", "--kv-cache-dtype", "fp8"], "an FP8 KV cache needs"),
        ((EIGHT_B, None, None), ["--gpu", "h100", "--tp", "3"], "--tp 3 does not split 32 attention heads"),
        ((EIGHT_B, "W8A16", None), ["--gpu", "h100"], "quant_algo 'W8A16' is not one"),
        ((EIGHT_B, None, None), ["--gpu", "h100", "--max-seq-len", "200000"], "beyond the model's"),
    ],
)
def test_refusals(tmp_path, checkpoint, args, message):
    source = write_modelopt_dir(tmp_path / "ckpt", *checkpoint)
    result = build("--checkpoint", str(source), "--output", str(tmp_path / "d"), "--target", "pytorch", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "d").exists()


def test_engine_only_options_are_refused_for_pytorch_and_vice_versa(tmp_path, tiny_model_dir):
    out = str(tmp_path / "d")
    result = build(
        "--checkpoint",
        str(tiny_model_dir),
        "--output",
        out,
        "--gpu",
        "h100",
        "--target",
        "pytorch",
        "--workers",
        "2",
    )
    assert result.exit_code == 1 and "engine-target options" in result.output
    trt = tmp_path / "trt"
    trt.mkdir()
    (trt / "config.json").write_text(json.dumps({"architecture": "LlamaForCausalLM"}))
    (trt / "rank0.safetensors").write_bytes(b"")
    result = build("--checkpoint", str(trt), "--output", out, "--gpu", "h100", "--target", "pytorch")
    assert result.exit_code == 1 and "is a TRT-LLM checkpoint (engine target)" in result.output


# ---------------------------------------------------------------- the deployment


def test_deployment_manifest_and_moved_checkpoint(tmp_path, tiny_model_dir):
    checkpoint = tmp_path / "ckpt"
    checkpoint.symlink_to(tiny_model_dir, target_is_directory=True)
    deploy = build_deployment(checkpoint, tmp_path / "deploy", "--gpu", "h100", "--tp", "2")
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert manifest["target"] == "pytorch" and manifest["tp"] == 2
    assert manifest["checkpoint"]["path"] == str(tiny_model_dir.resolve())  # absolute, links resolved
    assert manifest["checkpoint"]["kind"] == "hf" and manifest["checkpoint"]["quant_algo"] is None
    assert manifest["trtllm_serve_command"] == [
        "trtllm-serve",
        str(tiny_model_dir.resolve()),
        "--backend",
        "pytorch",
        "--host",
        "127.0.0.1",  # loopback unless told otherwise, like `serve --host`
        "--port",
        "8000",
        "--tp_size",
        "2",
        "--pp_size",
        "1",
        "--extra_llm_api_options",
        str(deploy.resolve() / "llm_api_options.yaml"),
    ]
    assert len(manifest["option_reasons"]) == 8 and all(
        len(r["reason"]) > 20 for r in manifest["option_reasons"]
    )
    deployment = read_deployment(deploy)
    assert (deployment.tp, deployment.pp, deployment.options["max_seq_len"]) == (2, 1, 8192)
    assert (
        build(
            "--checkpoint", str(checkpoint), "--output", str(deploy), "--gpu", "h100", "--target", "pytorch"
        ).exit_code
        == 1
    )  # exists, no --overwrite
    moved = write_modelopt_dir(tmp_path / "gone", EIGHT_B, None)
    other = tmp_path / "deploy2"
    assert (
        build(
            "--checkpoint", str(moved), "--output", str(other), "--gpu", "h100", "--target", "pytorch"
        ).exit_code
        == 0
    )
    (moved / "config.json").unlink()
    with pytest.raises(SwallowTrtError, match="is gone"):
        read_deployment(other)
    with pytest.raises(SwallowTrtError, match="not a pytorch-target deployment"):
        read_deployment(tiny_model_dir)


# ---------------------------------------------------------------- trtllm-serve


def test_serve_via_trtllm_serve_without_it_prints_the_command(tmp_path, tiny_model_dir, monkeypatch):
    deploy = build_deployment(tiny_model_dir, tmp_path / "deploy", "--gpu", "h200", "--tp", "2")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = CliRunner().invoke(
        serve_command, ["--via", "trtllm-serve", "--deploy", str(deploy), "--http-port", "9000"]
    )
    assert result.exit_code == 3
    assert "trtllm-serve NOT started" in result.output
    assert (
        f"trtllm-serve {tiny_model_dir.resolve()} --backend pytorch --host 127.0.0.1 --port 9000 --tp_size 2 "
        f"--pp_size 1 --extra_llm_api_options {deploy.resolve() / 'llm_api_options.yaml'}"
    ) in result.output
    result = CliRunner().invoke(serve_command, ["--via", "trtllm-serve", "--repo", str(deploy)])
    assert result.exit_code == 1 and "--deploy" in result.output


def test_serve_via_trtllm_serve_runs_it(tmp_path, tiny_model_dir, monkeypatch):
    deploy = build_deployment(tiny_model_dir, tmp_path / "deploy", "--gpu", "h100")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtllm-serve"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args.txt"}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = CliRunner().invoke(serve_command, ["--via", "trtllm-serve", "--deploy", str(deploy)])
    assert result.exit_code == 0, result.output
    args = (tmp_path / "args.txt").read_text().split()
    assert args[0] == str(tiny_model_dir.resolve())
    assert args[args.index("--extra_llm_api_options") + 1] == str(deploy.resolve() / "llm_api_options.yaml")
    assert args[args.index("--tp_size") + 1] == "1" and args[args.index("--host") + 1] == "127.0.0.1"


# ---------------------------------------------------------------- plan --target pytorch


def plan(*args: str):
    return CliRunner().invoke(plan_command, list(args))


def test_plan_pytorch_target():
    result = plan(
        "--model",
        "Llama-3.3-Swallow-70B-Instruct-v0.4",
        "--gpu",
        "h200",
        "--quant",
        "fp8",
        "--tp",
        "1",
        "--target",
        "pytorch",
        "--json",
    )
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["feasible"] and data["target"] == "pytorch"
    reserve = data["stages"][0]["reserve"]
    assert reserve["cuda_graphs"] == 9 * 200 * 10**6 and reserve["runtime"] == 3 << 30
    assert data["command"].startswith("make engine TARGET=pytorch ") and "QUANT=fp8" in data["command"]
    assert any("kv_cache_config.dtype: auto" in f["flags"][0] for f in data["flags"])
    engine = json.loads(
        plan(
            "--model",
            "Llama-3.3-Swallow-70B-Instruct-v0.4",
            "--gpu",
            "h200",
            "--quant",
            "fp8",
            "--tp",
            "1",
            "--json",
        ).output
    )
    assert engine["target"] == "engine" and "cuda_graphs" not in engine["stages"][0]["reserve"]


def test_plan_nvfp4_only_on_blackwell_and_only_for_pytorch():
    result = plan(
        "--model",
        "Llama-3.1-Swallow-8B-Instruct-v0.5",
        "--gpu",
        "h100",
        "--quant",
        "nvfp4",
        "--target",
        "pytorch",
    )
    assert result.exit_code == 1 and "NVFP4 needs Blackwell" in result.output
    result = plan(
        "--model",
        "Llama-3.1-Swallow-8B-Instruct-v0.5",
        "--gpu",
        "b200",
        "--quant",
        "nvfp4",
        "--target",
        "pytorch",
        "--json",
    )
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["feasible"]
    fp8 = json.loads(
        plan(
            "--model",
            "Llama-3.1-Swallow-8B-Instruct-v0.5",
            "--gpu",
            "b200",
            "--quant",
            "fp8",
            "--target",
            "pytorch",
            "--json",
        ).output
    )
    assert data["weight_bytes_per_gpu"] < fp8["weight_bytes_per_gpu"]  # 4.5 bits vs 8 bits per weight
    result = plan("--model", "Llama-3.1-Swallow-8B-Instruct-v0.5", "--gpu", "b200", "--quant", "nvfp4")
    assert result.exit_code == 1 and "plan it with --target pytorch" in result.output


def test_plan_reads_a_modelopt_checkpoint(tmp_path):
    source = write_modelopt_dir(tmp_path / "ckpt", EIGHT_B, "W4A16_AWQ")
    data = json.loads(plan("--model", str(source), "--gpu", "h100", "--target", "pytorch", "--json").output)
    assert data["quant"] == "int4_awq" and data["model_source"] == "modelopt-checkpoint"
    result = plan("--model", str(source), "--gpu", "h100", "--target", "pytorch", "--quant", "fp8")
    assert result.exit_code == 1 and "int4_awq" in result.output
