"""Repository generation without a server: configs parse back, engine golden values, CPU engine logic."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from triton_repo.models.cpu_engine import CpuEngine, RequestError, SamplingParams, load_model, word_lists
from triton_repo.repository.engine_configs import (
    CLIENT_INPUTS,
    ENGINE,
    FRONTS,
    MODEL_NAMES,
    PRE,
    PRE_TO_ENGINE,
    parse,
)
from triton_repo.repository.engine_repo import MODEL_FILES, repository_world_size
from triton_repo.repository.llmapi_repo import LLMAPI_FRONT_FILES
from triton_repo.repository.write import RepoOptions, write_repository
from trt_build.cli.serve import repo as repo_command
from trt_build.cli.serve import serve as serve_command
from trt_build.convert.pipeline import convert_checkpoint

CLIENT_NAMES_USED_BY_TOOLS = {
    # genai-perf --backend tensorrtllm, Triton's OpenAI frontend, tensorrtllm_backend client scripts
    "text_input",
    "max_tokens",
    "stream",
    "exclude_input_in_output",
    "seed",
    "random_seed",
    "min_tokens",
    "min_length",
    "return_num_input_tokens",
    "return_num_output_tokens",
    "end_id",
    "pad_id",
    "stop_words",
    "bad_words",
    "temperature",
    "top_k",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "beam_width",
    "return_log_probs",
}


def write_fake_engine(directory: Path, world_size: int = 1, paged_context_fmha: bool = True) -> Path:
    directory.mkdir(parents=True)
    config = {
        "version": "0.19.0",
        "pretrained_config": {"mapping": {"world_size": world_size, "tp_size": world_size, "pp_size": 1}},
        "build_config": {
            "max_batch_size": 64,
            "max_input_len": 4096,
            "max_seq_len": 8192,
            "plugin_config": {"use_paged_context_fmha": paged_context_fmha},
        },
    }
    (directory / "config.json").write_text(json.dumps(config))
    for rank in range(world_size):
        (directory / f"rank{rank}.engine").write_bytes(b"engine")
    return directory


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, tiny_model_dir):
    return convert_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("ckpt") / "tiny-ckpt")


@pytest.fixture(scope="module")
def engine_repo(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("engine-repo")
    engine = write_fake_engine(root / "engine", world_size=2)
    return write_repository(
        RepoOptions(root / "repo", tokenizer_dir, engine_dir=engine, kv_cache_free_gpu_mem_fraction=0.8)
    )


def test_every_generated_config_parses_back_to_the_same_message(
    engine_repo, checkpoint_dir, tmp_path, tokenizer_dir
):
    cpu_repo = write_repository(RepoOptions(tmp_path / "cpu", tokenizer_dir, checkpoint_dir=checkpoint_dir))
    for repo in (engine_repo, cpu_repo):
        for name in MODEL_NAMES:
            text = (repo / name / "config.pbtxt").read_text()
            assert "${" not in text
            config = parse(text)
            assert config.name == name
            assert (repo / name / "1").is_dir()


def test_engine_repo_golden_values(engine_repo, tokenizer_dir):
    engine = parse((engine_repo / ENGINE / "config.pbtxt").read_text())
    assert engine.backend == "tensorrtllm" and engine.max_batch_size == 64
    assert engine.model_transaction_policy.decoupled
    parameters = {key: value.string_value for key, value in engine.parameters.items()}
    assert parameters["gpt_model_type"] == "inflight_fused_batching"
    assert parameters["gpt_model_path"] == str((engine_repo.parent / "engine").resolve())
    assert parameters["exclude_input_in_output"] == "true"
    assert parameters["enable_kv_cache_reuse"] == "true"
    assert parameters["kv_cache_free_gpu_mem_fraction"] == "0.8"
    assert "max_attention_window_size" not in parameters  # full attention
    assert not list((engine_repo / ENGINE / "1").iterdir())  # the C++ backend needs no model.py
    scalars = [i for i in engine.input if list(i.dims) == [1]]
    assert scalars and all(i.HasField("reshape") and not i.reshape.shape for i in scalars)
    post = parse((engine_repo / "postprocessing" / "config.pbtxt").read_text())
    assert [group.count for group in post.instance_group] == [1] and not post.HasField("dynamic_batching")
    assert post.parameters["max_seq_len"].string_value == "8192"
    pre = parse((engine_repo / PRE / "config.pbtxt").read_text())
    assert pre.parameters["max_input_len"].string_value == "4096"
    assert pre.parameters["tokenizer_dir"].string_value == "preprocessing/tokenizer"
    assert (engine_repo / "preprocessing" / "tokenizer" / "tokenizer.json").is_file()
    assert repository_world_size(engine_repo) == 2
    for name in ("preprocessing", "postprocessing", "tensorrt_llm_bls", "ensemble"):
        assert (engine_repo / name / "1" / "model.py").is_file()
    assert (engine_repo / "preprocessing" / "1" / "prompt_limits.py").is_file()
    manifest = json.loads((engine_repo / "manifest.json").read_text())
    assert manifest["stage"] == "repo" and manifest["backend"] == "tensorrtllm"
    assert manifest["fronts"] == ["ensemble", "tensorrt_llm_bls"] and set(manifest["models"]) == set(
        MODEL_NAMES
    )


def test_client_tensors_match_what_the_tools_send(engine_repo):
    for name in ("ensemble", "tensorrt_llm_bls"):
        config = parse((engine_repo / name / "config.pbtxt").read_text())
        inputs = {i.name: i for i in config.input}
        assert set(inputs) >= CLIENT_NAMES_USED_BY_TOOLS
        assert [n for n, i in inputs.items() if not i.optional] == ["text_input", "max_tokens"]
        outputs = {o.name for o in config.output}
        assert {"text_output", "num_input_tokens", "num_output_tokens"} <= outputs
    # every client input reaches an input of the model the front routes it to
    declared = {
        name: {i.name for i in parse((engine_repo / name / "config.pbtxt").read_text()).input}
        for name in (PRE, ENGINE)
    }
    assert all(row.name in declared[row.model] for row in CLIENT_INPUTS)
    pre = parse((engine_repo / PRE / "config.pbtxt").read_text())
    assert {o.name for o in pre.output} == {tensor.name for tensor, _ in PRE_TO_ENGINE}
    assert all(target in declared[ENGINE] for _, target in PRE_TO_ENGINE)


def test_ensemble_and_the_bls_are_one_front(engine_repo):
    """The name clients call first is the stateful front: the same Python model under both names."""
    ensemble, bls = (parse((engine_repo / name / "config.pbtxt").read_text()) for name in FRONTS)
    assert (
        ensemble.backend == "python" and not ensemble.platform and ensemble.model_transaction_policy.decoupled
    )
    ensemble.name = bls.name
    assert ensemble == bls
    files = [sorted((engine_repo / name / "1").iterdir()) for name in FRONTS]
    assert [f.name for f in files[0]] == [f.name for f in files[1]]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(*files, strict=True))


def test_engine_repo_refuses_what_the_engine_cannot_do(tmp_path, tokenizer_dir):
    engine = write_fake_engine(tmp_path / "engine", paged_context_fmha=False)
    with pytest.raises(Exception, match="paged_context_fmha"):
        write_repository(RepoOptions(tmp_path / "a", tokenizer_dir, engine_dir=engine, kv_cache_reuse=True))
    with pytest.raises(Exception, match="exceeds the engine's max_batch_size 64"):
        write_repository(RepoOptions(tmp_path / "b", tokenizer_dir, engine_dir=engine, max_batch_size=65))
    repo = write_repository(RepoOptions(tmp_path / "c", tokenizer_dir, engine_dir=engine))
    config = parse((repo / ENGINE / "config.pbtxt").read_text())
    assert config.parameters["enable_kv_cache_reuse"].string_value == "false"
    (engine / "rank0.engine").unlink()
    with pytest.raises(Exception, match="0 rank\\*.engine files"):
        write_repository(RepoOptions(tmp_path / "d", tokenizer_dir, engine_dir=engine))


def test_repo_command_errors_are_clear(tmp_path, tokenizer_dir, checkpoint_dir):
    runner = CliRunner()
    result = runner.invoke(repo_command, ["--output", str(tmp_path / "r"), "--tokenizer", str(tokenizer_dir)])
    assert result.exit_code != 0 and "exactly one of --engine" in result.output
    result = runner.invoke(
        repo_command,
        ["--output", str(tmp_path / "r"), "--tokenizer", str(tokenizer_dir), "--engine", str(checkpoint_dir)],
    )
    assert result.exit_code != 0 and "no build_config.max_batch_size" in result.output
    result = runner.invoke(
        repo_command,
        [
            "--output",
            str(tmp_path / "r"),
            "--tokenizer",
            str(checkpoint_dir),
            "--checkpoint",
            str(checkpoint_dir),
        ],
    )
    assert result.exit_code != 0 and "not a Hugging Face tokenizer directory" in result.output
    ok = [
        "--output",
        str(tmp_path / "r"),
        "--tokenizer",
        str(tokenizer_dir),
        "--checkpoint",
        str(checkpoint_dir),
    ]
    assert runner.invoke(repo_command, ok).exit_code == 0
    again = runner.invoke(repo_command, ok)
    assert again.exit_code != 0 and "--overwrite" in again.output
    assert runner.invoke(repo_command, [*ok, "--overwrite"]).exit_code == 0
    assert not list(tmp_path.glob(".r.partial-*"))
    result = runner.invoke(serve_command, ["--repo", str(tmp_path)])
    assert result.exit_code != 0 and "not a swallow-trt model repository" in result.output


def test_word_lists_unpack_the_backend_layout():
    assert word_lists([[5, 6, 7, 8], [2, 3, 4, -1]]) == [[5, 6], [7], [8]]
    assert word_lists([[], []]) == []


@pytest.mark.parametrize(
    ("params", "greedy"),
    [
        (SamplingParams(4), True),
        (SamplingParams(4, temperature=0.0, top_k=50), True),
        (SamplingParams(4, temperature=0.7), False),
        (SamplingParams(4, top_k=1), True),
        (SamplingParams(4, top_p=0.9), False),
    ],
)
def test_greedy_unless_sampling_is_asked_for(params, greedy):
    assert params.greedy is greedy


def test_cpu_engine_on_the_reference_runtime(checkpoint_dir):
    engine = CpuEngine(load_model(checkpoint_dir), max_input_len=16, max_seq_len=32)
    prompt = [128000, 111344, 16144]
    first = list(engine.generate(prompt, SamplingParams(6)))
    assert len(first) == 6 and first == list(engine.generate(prompt, SamplingParams(6)))
    assert list(engine.generate(prompt, SamplingParams(6, stop_words=[[first[1]]]))) == first[:2]
    assert list(engine.generate(prompt, SamplingParams(6, end_id=first[2]))) == first[:2]
    banned = list(engine.generate(prompt, SamplingParams(6, bad_words=[[first[0]]])))
    assert banned[0] != first[0]
    late_end = list(engine.generate(prompt, SamplingParams(6, end_id=first[2], min_tokens=4)))
    assert late_end[:2] == first[:2] and len(late_end) >= 4
    assert list(engine.generate(prompt, SamplingParams(6, temperature=1.0, top_k=1, seed=1))) == first
    assert list(engine.generate(prompt, SamplingParams(6, temperature=1.0, top_p=1e-6, seed=1))) == first
    sampled = [list(engine.generate(prompt, SamplingParams(8, temperature=5.0, seed=3))) for _ in range(2)]
    assert sampled[0] == sampled[1]
    stopped = list(engine.generate(prompt, SamplingParams(6), cancelled=lambda: True))
    assert stopped == []
    for bad, message in [
        (SamplingParams(0), "at least 1"),
        (SamplingParams(40), "exceeds max_seq_len 32"),
    ]:
        with pytest.raises(RequestError, match=message):
            list(engine.generate(prompt, bad))
    with pytest.raises(RequestError, match="at most 16"):
        list(engine.generate(list(range(17)), SamplingParams(2)))
    with pytest.raises(RequestError, match="outside the vocabulary"):
        list(engine.generate([10**7], SamplingParams(2)))


@pytest.mark.slow
def test_serve_prints_the_endpoints_and_stops_cleanly_on_ctrl_c(tmp_path, tokenizer_dir, checkpoint_dir):
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from triton_repo.launch.tritonserver import Ports

    repo = write_repository(RepoOptions(tmp_path / "repo", tokenizer_dir, checkpoint_dir=checkpoint_dir))
    ports = Ports.free()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trt_build.cli",
            "serve",
            "--repo",
            str(repo),
            "--http-port",
            str(ports.http),
            "--grpc-port",
            str(ports.grpc),
            "--metrics-port",
            str(ports.metrics),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any("Press Ctrl-C" in line for line in lines):
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(lines)
            lines.append(line)
        output = "".join(lines)
        assert f"http://127.0.0.1:{ports.http}" in output and f"127.0.0.1:{ports.grpc}" in output
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/v2/health/ready", timeout=10) as response:
            assert response.status == 200
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0 and "Stopped." in rest
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # the command's process group is gone
    with pytest.raises(OSError):  # and tritonserver (its own session) no longer listens
        urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/v2/health/live", timeout=5)


# What a Triton container with TensorRT-LLM has for Python models, besides the standard library
CONTAINER_MODULES = {"numpy", "transformers", "jinja2", "triton_python_backend_utils"}


def imported_modules(path: Path) -> set[str]:
    """The top-level modules a file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "files",
    [*MODEL_FILES.values(), LLMAPI_FRONT_FILES],
    ids=[*MODEL_FILES, "llmapi_front"],
)
def test_the_python_models_of_a_gpu_repository_need_nothing_the_container_lacks(files):
    """swallow-trt is not installed where the repository is served: every module a copied file imports is
    the standard library, a package of the container, or another file copied beside it."""
    beside = {path.stem for path in files}
    for path in files:
        missing = imported_modules(path) - sys.stdlib_module_names - CONTAINER_MODULES - beside
        assert not missing, f"{path.name} imports {sorted(missing)}, which is not copied beside it"
