"""The composed trtllm-build command (golden argument lists written by hand from docs/trtllm-checkpoint.md
§5.3) and the build orchestration (host checks, temp dir, manifest, engine check)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trt_build.cli.build import build as command
from trt_build.common.errors import NO_GPU_TOOLCHAIN

QUANTS = {  # case -> (quant_algo, kv_cache_quant_algo)
    "none": (None, None),
    "fp8": ("FP8", None),
    "fp8+fp8kv": ("FP8", "FP8"),
    "int4_awq": ("W4A16_AWQ", None),
    "int4_awq+fp8kv": ("W4A16_AWQ", "FP8"),
    "int8_wo": ("W8A16", None),
    "int4_wo": ("W4A16", None),
}

# Flags that depend on the format, in the order the command has them (by hand, from docs/trtllm-checkpoint.md §5):
# paged context FMHA stays on except FP8 KV without FP8 weights; FP8 context FMHA with FP8 KV + FP8 weights;
# fused MLP only for FP8; the bf16 GEMM plugin for everything but FP8.
FORMAT_FLAGS = {
    "none": ["--use_paged_context_fmha", "enable", "--gemm_plugin", "auto"],
    "fp8": ["--use_paged_context_fmha", "enable", "--use_fused_mlp", "enable"],
    "fp8+fp8kv": [
        "--use_paged_context_fmha", "enable", "--use_fp8_context_fmha", "enable", "--use_fused_mlp", "enable",
    ],
    "int4_awq": ["--use_paged_context_fmha", "enable", "--gemm_plugin", "auto"],
    "int4_awq+fp8kv": ["--use_paged_context_fmha", "disable", "--gemm_plugin", "auto"],
    "int8_wo": ["--use_paged_context_fmha", "enable", "--gemm_plugin", "auto"],
    "int4_wo": ["--use_paged_context_fmha", "enable", "--gemm_plugin", "auto"],
}  # fmt: skip

REFUSED = {  # (case, gpu) -> words the refusal must contain
    ("fp8", "a100-80g"): ["FP8 weights", "int4_awq", "int8_wo"],
    ("fp8+fp8kv", "a100-80g"): ["FP8 weights", "int4_awq", "int8_wo"],
    ("int4_awq+fp8kv", "a100-80g"): ["FP8 KV cache", "--kv-cache-dtype auto"],
}


def write_checkpoint(directory: Path, quant_algo, kv_algo, tp: int, pp: int = 1) -> Path:
    directory.mkdir(parents=True)
    config = {
        "architecture": "LlamaForCausalLM",
        "dtype": "bfloat16",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "mapping": {"world_size": tp * pp, "tp_size": tp, "pp_size": pp},
        "quantization": {"quant_algo": quant_algo, "kv_cache_quant_algo": kv_algo},
    }
    (directory / "config.json").write_text(json.dumps(config))
    for rank in range(tp * pp):
        (directory / f"rank{rank}.safetensors").write_bytes(b"")
    return directory


def expected_argv(ckpt: str, out: str, case: str, tp: int) -> list[str]:
    return [
        "trtllm-build", "--checkpoint_dir", ckpt, "--output_dir", out,
        "--max_seq_len", "8192", "--max_input_len", "8192",
        "--max_batch_size", "256", "--max_num_tokens", "8192",
        "--kv_cache_type", "paged",
        *FORMAT_FLAGS[case],
        *(["--reduce_fusion", "enable"] if tp > 1 else []),
        "--multiple_profiles", "enable",
        "--workers", str(tp),
        "--output_timing_cache", f"{out}.timing.cache",
    ]  # fmt: skip


@pytest.mark.parametrize("gpu", ["h100", "a100-80g", "l40s"])
@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("case", list(QUANTS))
def test_golden_command(tmp_path, case, tp, gpu):
    ckpt = write_checkpoint(tmp_path / "ckpt", *QUANTS[case], tp=tp)
    out = tmp_path / "engine"
    result = CliRunner().invoke(
        command, ["--checkpoint", str(ckpt), "--output", str(out), "--gpu", gpu, "--dry-run"]
    )
    if (case, gpu) in REFUSED:
        assert result.exit_code == 1
        for words in REFUSED[(case, gpu)]:
            assert words in result.output
        return
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert shlex.split(lines[-1]) == expected_argv(str(ckpt), str(out), case, tp)
    assert all(line.startswith("#") for line in lines[:-1])  # the reasons, as shell comments
    assert "--max_seq_len 8192: always explicit" in result.output
    assert ("paged context FMHA is turned off" in result.output) == (case == "int4_awq+fp8kv")
    assert ("PCIe" in result.output) == (gpu == "l40s" and tp > 1)
    assert not out.exists()


def test_int_weights_refused_on_blackwell(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ckpt", "W4A16_AWQ", None, tp=1)
    result = CliRunner().invoke(
        command, ["--checkpoint", str(ckpt), "--output", "e", "--gpu", "b200", "--dry-run"]
    )
    assert result.exit_code == 1 and "SM >= 100" in result.output and "--quant fp8" in result.output


def test_limits_and_pp_reach_the_command(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ckpt", "FP8", "FP8", tp=2, pp=2)
    args = ["--checkpoint", str(ckpt), "--output", "e", "--gpu", "h200", "--dry-run", "--max-seq-len", "32768",
            "--max-input-len", "30000", "--max-batch-size", "64", "--max-num-tokens", "16384"]  # fmt: skip
    argv = shlex.split(CliRunner().invoke(command, args).output.strip().splitlines()[-1])
    for flag, value in [("--max_seq_len", "32768"), ("--max_input_len", "30000"), ("--max_batch_size", "64"),
                        ("--max_num_tokens", "16384"), ("--workers", "4")]:  # fmt: skip
        assert argv[argv.index(flag) + 1] == value


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: (d / "rank1.safetensors").unlink(), "lacks rank1.safetensors"),
        (lambda d: (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}'), "Hugging Face"),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps(
                    {
                        "architecture": "LlamaForCausalLM",
                        "quantization": {"quant_algo": "NVFP4"},
                        "mapping": {"tp_size": 2, "world_size": 2},
                    }
                )
            ),
            "NVFP4",
        ),  # fmt: skip
    ],
)
def test_bad_checkpoints_are_explained(tmp_path, mutate, expected):
    ckpt = write_checkpoint(tmp_path / "ckpt", None, None, tp=2)
    mutate(ckpt)
    result = CliRunner().invoke(
        command, ["--checkpoint", str(ckpt), "--output", "e", "--gpu", "h100", "--dry-run"]
    )
    assert result.exit_code == 1 and expected in result.output


# ---------------------------------------------------------------- orchestration with stand-in tools


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


FAKE_BUILD = """
import json, os, sys
args = sys.argv[1:]
out = args[args.index("--output_dir") + 1]
ckpt = json.load(open(os.path.join(args[args.index("--checkpoint_dir") + 1], "config.json")))
json.dump({"args": args}, open(os.path.join(out, "config.json"), "w"))
ranks = ckpt["mapping"]["world_size"] - int(os.environ.get("FAKE_MISSING_RANKS", "0"))
for r in range(ranks):
    open(os.path.join(out, f"rank{r}.engine"), "wb").write(b"engine")
print("fake trtllm-build done")
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture()
def fake_host(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def _nvidia_smi(bin_dir: Path, line: str) -> None:
    _script(bin_dir / "nvidia-smi", f"print({line!r})\n")


def build(tmp_path, gpu="h100", tp=2):
    ckpt = write_checkpoint(tmp_path / "ckpt", "FP8", None, tp=tp)
    out = tmp_path / "out" / "engine"
    result = CliRunner().invoke(command, ["--checkpoint", str(ckpt), "--output", str(out), "--gpu", gpu])
    return result, out


def test_without_trtllm_build_it_stops_with_the_command(tmp_path, fake_host):
    result, out = build(tmp_path)
    assert result.exit_code == NO_GPU_TOOLCHAIN
    assert "Engine NOT built" in result.output and "tritonserver:<yy.mm>-trtllm-python-py3" in result.output
    assert "trtllm-build --checkpoint_dir" in result.output and "--use_fused_mlp enable" in result.output
    assert not out.exists()


def test_build_runs_checks_and_writes_a_manifest(tmp_path, fake_host):
    _nvidia_smi(fake_host, "NVIDIA H100 80GB HBM3, 9.0, 81559\nNVIDIA H100 80GB HBM3, 9.0, 81559")
    _script(fake_host / "trtllm-build", FAKE_BUILD)
    result, out = build(tmp_path)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"config.json", "rank0.engine", "rank1.engine", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trtllm_build_command"][-1] == f"{out}.timing.cache"
    assert (
        manifest["gpus_detected"][0]["compute_capability"] == [9, 0]
        and manifest["gpu_profile"]["name"] == "h100"
    )
    assert "tensorrt_llm_version" in manifest and manifest["build_seconds"] >= 0
    run_args = json.loads((out / "config.json").read_text())["args"]
    assert run_args[run_args.index("--output_dir") + 1] != str(out)  # built in a temporary directory
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".engine")]


def test_wrong_gpu_architecture_is_refused(tmp_path, fake_host):
    _nvidia_smi(fake_host, "NVIDIA A100-SXM4-80GB, 8.0, 81920")
    _script(fake_host / "trtllm-build", FAKE_BUILD)
    result, out = build(tmp_path)
    assert result.exit_code == 1 and "--gpu a100-80g" in result.output and not out.exists()


@pytest.mark.parametrize(
    ("env", "expected"), [("FAKE_EXIT", "exit status 2"), ("FAKE_MISSING_RANKS", "rank1.engine")]
)
def test_failed_or_incomplete_builds_leave_nothing(tmp_path, fake_host, monkeypatch, env, expected):
    _nvidia_smi(fake_host, "NVIDIA H100 80GB HBM3, 9.0, 81559")
    _script(fake_host / "trtllm-build", FAKE_BUILD)
    monkeypatch.setenv(env, {"FAKE_EXIT": "2", "FAKE_MISSING_RANKS": "1"}[env])
    result, out = build(tmp_path)
    assert result.exit_code == 1 and expected in result.output
    assert not out.exists() and list(out.parent.iterdir()) == []


# ---------------------------------------------------------------- the real thing, on a GPU host


@pytest.mark.gpu
def test_trtllm_build_on_a_tiny_converted_checkpoint(tmp_path, monkeypatch, tokenizer_dir):
    from trt_build.build.engine import detect_gpus
    from trt_build.common.gpus import profile_for_compute_capability
    from trt_build.convert.pipeline import convert_checkpoint
    from trt_build.source.hf_config import LlamaArchitecture
    from trt_build.source.tiny_model import LLAMA31_ROPE_SCALING, PRESETS, write_tiny_model

    # head_dim 64: the attention kernels do not take the 8 of the CPU tiny preset.
    shape = LlamaArchitecture(vocab_size=128256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                              rope_theta=500000.0, rope_scaling=LLAMA31_ROPE_SCALING)  # fmt: skip
    monkeypatch.setitem(PRESETS, "tiny-hd64", shape)
    model = write_tiny_model(tmp_path / "hf", preset="tiny-hd64")
    ckpt = convert_checkpoint(model, tmp_path / "ckpt")
    gpu = detect_gpus()[0]
    profile = profile_for_compute_capability(*gpu["compute_capability"], gpu["memory_bytes"])
    assert profile is not None, f"no profile for {gpu}"
    out = tmp_path / "engine"
    args = ["--checkpoint", str(ckpt), "--output", str(out), "--gpu", profile.name, "--max-seq-len", "256",
            "--max-batch-size", "4", "--max-num-tokens", "256"]  # fmt: skip
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and (out / "rank0.engine").stat().st_size > 0
    built = json.loads((out / "config.json").read_text())
    assert built["build_config"]["max_seq_len"] == 256
    assert json.loads((out / "manifest.json").read_text())["tensorrt_llm_version"]
    assert os.path.isfile(f"{out}.timing.cache")


ROOT = Path(__file__).resolve().parents[1]


def make_engine(work: Path, *variables: str) -> str:
    run = subprocess.run(["make", "-s", "engine", f"WORK={work}", "DRY_RUN=1", *variables], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout


@pytest.mark.parametrize("target, checkpoint", [("engine", "checkpoint"), ("pytorch", "checkpoint-pytorch")])
def test_make_engine_dry_run_prints_every_command_and_runs_none(tiny_model_dir, tmp_path, target, checkpoint):
    work = tmp_path / "work"
    out = make_engine(work, f"MODEL={tiny_model_dir}", "QUANT=fp8", f"TARGET={target}", "DEVICE=cuda")
    lines = [line for line in out.splitlines() if line.startswith("would run: ")]
    assert "nothing to fetch" in out and not any(" fetch " in line for line in lines)
    convert, build = lines  # convert (calibrating on the device asked for), then build
    assert " convert " in convert and "--quant fp8" in convert and convert.endswith("--device cuda")
    assert f"--output {work / f'{tiny_model_dir.name}-fp8-tp1pp1' / checkpoint}" in convert
    assert " build " in build and "--gpu h100" in build
    assert not work.exists()  # nothing converted, calibrated or built


def test_make_engine_fetches_a_hub_model_and_calibrates_where_nvidia_smi_says(tmp_path):
    out = make_engine(
        tmp_path / "work", "MODEL=tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5", "QUANT=int4_awq"
    )
    fetch, convert, _ = (line for line in out.splitlines() if line.startswith("would run: "))
    assert " fetch tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5 --revision main" in fetch
    assert convert.endswith(f"--device {'cuda' if shutil.which('nvidia-smi') else 'cpu'}")
    assert not (tmp_path / "work").exists()
