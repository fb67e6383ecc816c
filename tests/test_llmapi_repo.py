"""The pytorch-target repository: golden configs and model.yaml, cumulative -> delta text, the launcher,
end to end on a real tritonserver with the CPU stand-in, and the real LLM API where it is installed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from triton_repo.client.chat import stream_grpc, stream_http
from triton_repo.launch.serve import check_repository
from triton_repo.launch.tritonserver import Ports, TritonInstallation, TritonServer, server_command
from triton_repo.models.text_deltas import REPLACEMENT, CumulativeText, deltas
from triton_repo.repository import engine_configs as model_configs
from triton_repo.repository.write import RepoOptions, write_repository
from trt_build.cli.build import build as build_command
from trt_build.cli.serve import chat as chat_command
from trt_build.common.errors import SwallowTrtError

# The stock llmapi config.pbtxt I/O (docs/triton.md §4.3), written out by hand.
LLMAPI_INPUTS = {
    "text_input": ("TYPE_STRING", [-1], False),
    "streaming": ("TYPE_BOOL", [1], True),
    "sampling_param_best_of": ("TYPE_INT32", [1], True),
    "sampling_param_temperature": ("TYPE_FP32", [1], True),
    "sampling_param_top_k": ("TYPE_INT32", [1], True),
    "sampling_param_top_p": ("TYPE_FP32", [1], True),
    "sampling_param_frequency_penalty": ("TYPE_FP32", [1], True),
    "sampling_param_presence_penalty": ("TYPE_FP32", [1], True),
    "sampling_param_max_tokens": ("TYPE_INT32", [1], True),
    "sampling_param_stop": ("TYPE_STRING", [-1], True),
    "sampling_param_seed": ("TYPE_UINT64", [1], True),
    "sampling_param_exclude_input_from_output": ("TYPE_BOOL", [1], True),
    "sampling_param_return_perf_metrics": ("TYPE_BOOL", [1], True),
    "return_finish_reason": ("TYPE_BOOL", [1], True),
    "return_stop_reason": ("TYPE_BOOL", [1], True),
    "return_cumulative_logprob": ("TYPE_BOOL", [1], True),
    "stop": ("TYPE_BOOL", [1], True),
}
FRONT_INPUTS = {
    "text_input", "max_tokens", "messages", "apply_chat_template", "stop_words", "seed", "random_seed",
    "exclude_input_in_output", "stream", "top_k", "top_p", "temperature", "presence_penalty",
    "frequency_penalty", "return_perf_metrics", "return_num_input_tokens", "return_num_output_tokens",
}  # fmt: skip


def type_name(value: int) -> str:
    return model_configs.mc.DataType.Name(value)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("pt-deploy")
    args = ["--checkpoint", str(tiny_model_dir), "--output", str(root / "deploy"), "--gpu", "h200",
            "--target", "pytorch", "--tp", "2", "--max-batch-size", "16", "--max-seq-len", "2048"]  # fmt: skip
    result = CliRunner().invoke(build_command, args)
    assert result.exit_code == 0, result.output
    return root / "deploy"


def test_pytorch_repository_golden(tmp_path, deployment, tokenizer_dir, tiny_model_dir):
    repo = write_repository(RepoOptions(tmp_path / "repo", tokenizer_dir, engine_dir=deployment))
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    assert models == ["tensorrt_llm", "tensorrt_llm_bls"]
    configs = {name: model_configs.parse((repo / name / "config.pbtxt").read_text()) for name in models}

    llmapi = configs["tensorrt_llm"]
    assert (llmapi.backend, llmapi.max_batch_size, llmapi.model_transaction_policy.decoupled) == (
        "python",
        0,
        True,
    )
    got = {i.name: (type_name(i.data_type), list(i.dims), i.optional) for i in llmapi.input}
    assert got == LLMAPI_INPUTS
    outputs = {o.name: type_name(o.data_type) for o in llmapi.output}
    assert outputs["text_output"] == "TYPE_STRING" and outputs["finish_reason"] == "TYPE_STRING"
    assert len(llmapi.instance_group) == 1 and llmapi.instance_group[0].count == 1
    assert "swallow_trt_cpu_stand_in" not in llmapi.parameters

    front = configs["tensorrt_llm_bls"]
    assert (
        front.backend == "python" and front.model_transaction_policy.decoupled and front.max_batch_size == 16
    )
    assert {i.name for i in front.input} == FRONT_INPUTS
    assert not next(i for i in front.input if i.name == "text_input").optional
    assert front.parameters["tensorrt_llm_model_name"].string_value == "tensorrt_llm"
    assert front.parameters["max_input_len"].string_value == "2047"  # the deployment's max_seq_len 2048
    assert (repo / front.parameters["tokenizer_dir"].string_value / "tokenizer.json").is_file()
    assert {p.name for p in (repo / "tensorrt_llm_bls" / "1").iterdir()} >= {
        "model.py", "repo_common.py", "tokenizer_loading.py", "text_deltas.py", "prompt_limits.py", "tensor_routes.py"
    }  # fmt: skip

    model_yaml = yaml.safe_load((repo / "tensorrt_llm" / "1" / "model.yaml").read_text())
    options = yaml.safe_load((deployment / "llm_api_options.yaml").read_text())
    assert model_yaml == {
        "model": str(tiny_model_dir.resolve()),
        "backend": "pytorch",
        **options,
        "triton_config": {"max_batch_size": 0, "decoupled": True, "cancellation_check_period_ms": 100},
    }
    assert model_yaml["tensor_parallel_size"] == 2 and model_yaml["max_seq_len"] == 2048
    assert not (repo / "tensorrt_llm" / "1" / "model.py").exists()  # the stock model is not ours to write
    manifest = json.loads((repo / "manifest.json").read_text())
    assert (manifest["target"], manifest["backend"], manifest["llmapi_model"]) == (
        "pytorch",
        "llmapi",
        "missing",
    )
    assert manifest["tensor_parallel_size"] == 2 and manifest["world_size"] == 1
    with pytest.raises(SwallowTrtError, match="lacks TensorRT-LLM's llmapi model"):
        check_repository(repo)


def test_stock_llmapi_files_are_copied_and_checked(tmp_path, deployment, tokenizer_dir):
    stock = tmp_path / "llmapi" / "tensorrt_llm" / "1"
    stock.mkdir(parents=True)
    with pytest.raises(SwallowTrtError, match="lacks model.py, helpers.py"):
        write_repository(
            RepoOptions(tmp_path / "bad", tokenizer_dir, engine_dir=deployment, llmapi_model=stock)
        )
    (stock / "model.py").write_text("# stock llmapi model\n")
    (stock / "helpers.py").write_text("# stock helpers\n")
    repo = write_repository(
        RepoOptions(tmp_path / "repo", tokenizer_dir, engine_dir=deployment, llmapi_model=stock)
    )
    assert (repo / "tensorrt_llm" / "1" / "model.py").read_text() == "# stock llmapi model\n"
    assert check_repository(repo)["llmapi_model"] == "copied"
    with pytest.raises(SwallowTrtError, match="takes its limits"):
        write_repository(RepoOptions(tmp_path / "r2", tokenizer_dir, engine_dir=deployment, max_seq_len=100))
    with pytest.raises(SwallowTrtError, match="exceeds the deployment's max_batch_size 16"):
        write_repository(
            RepoOptions(tmp_path / "r3", tokenizer_dir, engine_dir=deployment, max_batch_size=17)
        )


def test_hf_checkpoint_gives_the_cpu_stand_in_layout(tmp_path, tiny_model_dir, tokenizer_dir):
    repo = write_repository(
        RepoOptions(tmp_path / "repo", tokenizer_dir, checkpoint_dir=tiny_model_dir, max_seq_len=512)
    )
    llmapi = model_configs.parse((repo / "tensorrt_llm" / "config.pbtxt").read_text())
    assert llmapi.parameters["swallow_trt_cpu_stand_in"].string_value == "true"
    assert {i.name for i in llmapi.input} == set(LLMAPI_INPUTS)
    assert (repo / "tensorrt_llm" / "1" / "model.py").read_text().startswith('"""tensorrt_llm (CPU stand-in')
    model_yaml = yaml.safe_load((repo / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert model_yaml["model"] == str(tiny_model_dir.resolve()) and model_yaml["max_seq_len"] == 512
    assert check_repository(repo)["backend"] == "python-cpu-llmapi-stand-in"


def test_llmapi_tp_launch_is_one_server_under_mpirun(tmp_path):
    installation = TritonInstallation(Path("/opt/tritonserver/bin/tritonserver"), Path("/b"))
    single = server_command(installation, tmp_path, Ports(1, 2, 3), "p_", mpi_singleton=True)
    assert single[:5] == ["mpirun", "--allow-run-as-root", "-n", "1", "/opt/tritonserver/bin/tritonserver"]
    assert ":" not in single and "--disable-auto-complete-config" in single
    assert server_command(installation, tmp_path, Ports(1, 2, 3), "p_")[0].endswith("tritonserver")


# ---------------------------------------------------------------- cumulative -> deltas


def test_cumulative_text_hand_cases():
    assert deltas(["東", "東京\ufffd", "東京\ufffd\ufffd", "東京🍣"]) == ["東", "京", "", "🍣"]
    assert deltas(["a", "ab\ufffd"]) == ["a", "b\ufffd"]  # cut off inside a character: as the full decode
    assert deltas([]) == [""]
    state = CumulativeText()
    assert state.push("紅葉") == "紅葉" and state.push("紅") == "" and state.rewritten == 1
    assert state.finish("紅葉が") == "が" and state.sent == "紅葉が"


@pytest.mark.parametrize(
    "text", ["東京工業大学の鬱蒼とした森で、麒麟と齟齬が生じた。", "𠮷野家で🍣を食べた。", "日本語の文章"]
)
def test_naive_cumulative_japanese_stream_becomes_whole_characters(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    cumulative = [tokenizer.decode(ids[: i + 1]) for i in range(len(ids))]
    out = deltas(cumulative)
    assert "".join(out) == text == cumulative[-1]
    assert not any(REPLACEMENT in delta for delta in out)
    if any(c.endswith(REPLACEMENT) for c in cumulative):  # really split characters were held back
        assert "" in out


# ---------------------------------------------------------------- end to end on the CPU


@pytest.fixture(scope="module")
def cpu_server(tmp_path_factory, tiny_model_dir, tokenizer):
    from tests.served_models import write_cycle_model

    root = tmp_path_factory.mktemp("pt-serving")
    model_dir = root / "cycle-model"
    write_cycle_model(tiny_model_dir, model_dir, tokenizer)
    repo = write_repository(RepoOptions(root / "repo", model_dir, checkpoint_dir=model_dir, max_seq_len=4096))
    with TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as running:
        yield running


def generate(server, **fields) -> dict:
    import urllib.request

    body = json.dumps({"id": uuid.uuid4().hex, **fields}).encode()
    request = urllib.request.Request(
        f"{server.http_url}/v2/models/tensorrt_llm_bls/generate", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_cpu_stand_in_serves_the_pytorch_repository_end_to_end(cpu_server):
    from tests.served_models import ANSWER_9, PROMPT

    body = {"id": uuid.uuid4().hex, "text_input": PROMPT, "max_tokens": 9, "stream": True}
    for stream in (stream_http, stream_grpc):
        url = cpu_server.http_url if stream is stream_http else cpu_server.grpc_url
        out = list(stream(url, "tensorrt_llm_bls", {**body, "id": uuid.uuid4().hex}))
        assert "".join(out) == ANSWER_9  # prompt not echoed, deltas concatenate
        assert not any(REPLACEMENT in delta for delta in out)
        assert len([d for d in out if d]) >= 5
    whole = generate(cpu_server, text_input=PROMPT, max_tokens=9, return_num_input_tokens=True)
    assert whole["text_output"] == ANSWER_9 and whole["num_input_tokens"] == 2
    # one BOS: a literal <|begin_of_text|> from the client is not doubled
    assert (
        generate(cpu_server, text_input="<|begin_of_text|>" + PROMPT, max_tokens=9)["text_output"] == ANSWER_9
    )
    assert generate(cpu_server, text_input=PROMPT, max_tokens=9, stop_words=["野"])["text_output"] == "葉😀𠮷"
    echoed = generate(cpu_server, text_input=PROMPT, max_tokens=9, exclude_input_in_output=False)
    assert echoed["text_output"] == PROMPT + ANSWER_9


@pytest.mark.slow
def test_chat_finds_the_front_of_a_pytorch_repository(cpu_server):
    """A pytorch repository has no `ensemble`: `chat` without --model uses its tensorrt_llm_bls front."""
    from tests.served_models import ANSWER_9, PROMPT

    args = ["--url", cpu_server.http_url, "--raw", "--max-tokens", "9", PROMPT]
    result = CliRunner().invoke(chat_command, args)
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER_9 + "\n"


@pytest.mark.slow
def test_chat_template_prompt_carries_one_bos(cpu_server, tokenizer):
    messages = [{"role": "user", "content": "紅葉の名所は?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith(tokenizer.bos_token)
    expected = len(tokenizer.encode(rendered, add_special_tokens=False))  # the template's own single BOS
    for fields in ({"messages": json.dumps(messages, ensure_ascii=False), "text_input": ""},
                   {"text_input": "紅葉の名所は?", "apply_chat_template": True}):  # fmt: skip
        answer = generate(cpu_server, max_tokens=3, return_num_input_tokens=True, **fields)
        assert answer["num_input_tokens"] == expected  # the template's BOS, not a second one


# ---------------------------------------------------------------- the real LLM API (GPU hosts)


@pytest.mark.gpu
def test_real_llm_api_loads_the_checkpoint_with_our_options(tmp_path):
    """TensorRT-LLM's PyTorch backend loads a pytorch-target checkpoint with the options we write."""
    from tensorrt_llm import LLM, SamplingParams
    from tensorrt_llm.llmapi.llm_utils import update_llm_args_with_extra_dict

    from trt_build.source.tiny_model import write_tiny_model
    from trt_build.source.tokenizer import copy_tokenizer

    checkpoint = write_tiny_model(tmp_path / "model", preset="8b-shape", layers=2, seed=0)  # head_dim 128
    copy_tokenizer(checkpoint)
    args = ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "deploy"), "--gpu", "h100",
            "--target", "pytorch", "--max-batch-size", "4", "--max-seq-len", "256"]  # fmt: skip
    assert CliRunner().invoke(build_command, args).exit_code == 0
    options = yaml.safe_load((tmp_path / "deploy" / "llm_api_options.yaml").read_text())
    llm = LLM(**update_llm_args_with_extra_dict({"model": str(checkpoint)}, options))  # as the llmapi model
    try:
        outputs = llm.generate(["東京の"], SamplingParams(max_tokens=8))
        assert len(outputs[0].outputs[0].token_ids) > 0
    finally:
        llm.shutdown()


@pytest.mark.slow
def test_a_client_hang_up_stops_the_llmapi_request_through_the_front(cpu_server):
    """By the stand-in's own counters: the request ends far short of the 3000 tokens asked for."""
    from test_triton_repo_serving import hang_up_after_first_event

    from tests.engine_metrics import when_idle
    from tests.served_models import ANSWER_9, PROMPT

    before = when_idle(cpu_server.metrics_url)
    hang_up_after_first_event(cpu_server, "tensorrt_llm_bls", f"hangup-{uuid.uuid4().hex}", 3000)
    after = when_idle(cpu_server.metrics_url)
    assert after.finished - before.finished == 1
    assert after.output_tokens - before.output_tokens < 3000
    assert generate(cpu_server, text_input=PROMPT, max_tokens=9)["text_output"] == ANSWER_9


def post_status(server, model: str, **fields) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{server.http_url}/v2/models/{model}/generate",
        data=json.dumps(fields, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        from tests.served_models import error_text

        return error.code, error_text(error.read())


@pytest.mark.slow
def test_the_llmapi_front_refuses_prompts_by_size_and_gives_its_own_ids(cpu_server, tokenizer):
    """8.4 MB and an over-long chat are refused by size, values out of range by the fronts' table (400, naming
    the field); `stop` requests sent to the llmapi model under the client's id do not reach the client's
    request."""
    import threading

    from tests.front_clients import ask
    from tests.served_models import PROMPT, answer

    status, text = post_status(cpu_server, "tensorrt_llm_bls", text_input="紅葉" * 1_400_000, max_tokens=4)
    assert status == 400 and "text_input is 8400000 bytes" in text and "max_input_len" in text
    messages = json.dumps([{"role": "user", "content": "紅葉" * 5000}] * 20, ensure_ascii=False)
    status, text = post_status(cpu_server, "tensorrt_llm_bls", text_input="", messages=messages, max_tokens=4)
    assert status == 400 and "messages is 600080 bytes of text" in text
    for fields, message in [
        ({"max_tokens": 2**31}, "max_tokens 2147483648 is out of range"),
        ({"max_tokens": "4"}, 'max_tokens must be an integer, not "4"'),
        ({"max_tokens": 4, "temperature": -0.5}, "temperature -0.5 is out of range"),
        ({"max_tokens": 4, "top_p": 1.5}, "top_p 1.5 is out of range"),
    ]:  # the same table as the engine repository's fronts (tensor_routes.RANGES)
        status, text = post_status(cpu_server, "tensorrt_llm_bls", text_input="紅", **fields)
        assert status == 400 and message in text, (status, text)

    def stop_the_victim() -> None:
        for _ in range(30):
            post_status(cpu_server, "tensorrt_llm", id="victim", text_input="", stop=True)

    stopper = threading.Thread(target=stop_the_victim)
    stopper.start()
    fields = {"text_input": PROMPT, "max_tokens": 40}
    deltas = ask(cpu_server, "http", "tensorrt_llm_bls", fields, "victim", True)
    stopper.join()
    assert "".join(deltas) == answer(tokenizer, 40)
