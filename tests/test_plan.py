"""Planner figures against hand-computed values (Llama-3.1 8B / 70B shapes, docs/trtllm-checkpoint.md)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trt_build.cli.plan import plan as command
from trt_build.common.gpus import PROFILES, get_profile
from trt_build.plan.planner import GB, Scenario, make_plan, resolve_model
from trt_build.quant.schemes import SCHEMES

EIGHT_B = "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5"
SEVENTY_B = "Llama-3.3-Swallow-70B-Instruct-v0.4"


def plan(model=EIGHT_B, gpu="h100", quant="none", kv=None, tp=1, pp=1, **limits):
    scenario = Scenario(resolve_model(model), get_profile(gpu), SCHEMES[quant], kv, tp, pp, **limits)
    return make_plan(scenario)


def cli(*args):
    return CliRunner().invoke(command, list(args))


def test_8b_bf16_kv_cache_is_128_kib_per_token():
    result = plan()
    assert result.stages[0].kv_bytes_per_token == 131072  # 32 layers x 2 x 8 heads x 128 x 2 B
    assert plan(kv="FP8").stages[0].kv_bytes_per_token == 65536
    assert plan(tp=2).stages[0].kv_bytes_per_token == 65536  # each rank holds 4 of the 8 KV heads


def test_70b_kv_cache_per_token_and_per_pp_stage():
    assert plan(SEVENTY_B, tp=4).stages[0].kv_bytes_per_token == 80 * 2 * 2 * 128 * 2
    stages = plan(SEVENTY_B, quant="fp8", tp=2, pp=2).stages
    assert [s.layers for s in stages] == [40, 40]
    assert stages[0].kv_bytes_per_token == 40 * 2 * 4 * 128 * 2
    assert stages[0].weights["embedding"] > 0 and stages[0].weights["lm_head"] == 0
    assert stages[1].weights["lm_head"] > 0 and stages[1].weights["embedding"] == 0


def test_8b_weights_by_format():
    # Linear params of the 32 blocks: 32 x 4096 x (6144 + 4096 + 3 x 14336) = 6,979,321,856.
    linears = 32 * 4096 * (6144 + 4096 + 3 * 14336)
    embedding = 128256 * 4096 * 2  # bf16, and the same again for lm_head
    bf16 = plan().stages[0].weights
    assert bf16["linears"] == 2 * linears and bf16["embedding"] == bf16["lm_head"] == embedding
    fp8 = plan(quant="fp8").stages[0]
    assert 8.0 * GB < fp8.weight_bytes < 9.5 * GB
    assert fp8.weights["linears"] == linears + 32 * 5 * 8  # fp8 bytes + two fp32 scalars per linear
    awq = plan(quant="int4_awq").stages[0].weights["linears"]
    assert awq > linears // 2 and awq < linears // 2 * 1.04  # bf16 group scales: +1/64, + prequant
    assert plan(quant="int8_wo").stages[0].weights["linears"] > linears
    tp2 = plan(quant="fp8", tp=2).stages[0].weights
    assert tp2["embedding"] == embedding and tp2["lm_head"] == embedding // 2  # replicated / split over TP


def test_kv_tokens_follow_from_the_free_memory():
    result = plan()
    stage = result.stages[0]
    left = PROFILES["h100"].memory_bytes - stage.weight_bytes - stage.reserve_bytes
    assert stage.kv_pool_bytes == int(left * 0.9)
    assert stage.kv_tokens == stage.kv_pool_bytes // 131072
    assert result.sequences == stage.kv_tokens // 32 // (8192 // 32)
    assert plan(max_seq_len=4096).sequences >= 2 * result.sequences


def test_70b_bf16_on_one_h100_is_refused_with_alternatives():
    result = cli("--model", SEVENTY_B, "--gpu", "h100", "--tp", "1")
    assert result.exit_code == 1
    assert "Refused:" in result.output and "one h100 has 80 GB" in result.output
    assert "--tp 2" in result.output and "--quant" in result.output and "int4_awq" in result.output


def test_70b_without_tp_gets_the_recommended_tp():
    data = json.loads(cli("--model", SEVENTY_B, "--gpu", "h100", "--json").output)
    assert data["tp"] == data["recommended_tp"] == 4 and data["feasible"]
    fp8 = json.loads(cli("--model", SEVENTY_B, "--gpu", "h100", "--quant", "fp8", "--json").output)
    assert fp8["tp"] == 2  # FP8 70B barely fits one H100: TP 2 leaves room for KV
    h200 = json.loads(
        cli("--model", SEVENTY_B, "--gpu", "h200", "--quant", "fp8", "--tp", "1", "--json").output
    )
    assert h200["feasible"] and h200["sequences_of_max_seq_len"] >= 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--gpu", "a100-80g", "--quant", "fp8"], ["compute capability", "int4_awq", "int8_wo", "H100"]),
        (["--gpu", "a100-40g", "--kv-cache-dtype", "fp8"], ["FP8 KV cache"]),
        (["--gpu", "h100", "--tp", "3"], ["does not split 32 attention heads", "[1, 2, 4, 8, 16]"]),
        (["--gpu", "h100", "--pp", "40"], ["larger than the number of layers (32)"]),
        (["--gpu", "b200", "--quant", "int8_wo"], ["SM >= 100", "--quant fp8"]),
        (["--gpu", "h100", "--max-seq-len", "262144"], ["max_position_embeddings"]),
    ],
)
def test_impossible_combinations_are_refused(args, expected):
    result = cli("--model", EIGHT_B, *args)
    assert result.exit_code == 1
    for words in expected:
        assert words in result.output


def test_awq_group_divisibility_is_checked(tiny_model_dir):
    # tiny: 8 heads x head_dim 8 = 64 input columns for dense: not a multiple of 128 at any TP.
    result = cli("--model", str(tiny_model_dir), "--gpu", "h100", "--quant", "int4_awq", "--tp", "1")
    assert result.exit_code == 1 and "group size 128 does not divide the input dimension" in result.output


def test_human_output_has_the_figures_and_flags():
    result = cli(
        "--model", EIGHT_B, "--gpu", "h100", "--quant", "fp8", "--kv-cache-dtype", "fp8", "--tp", "1"
    )
    assert result.exit_code == 0, result.output
    assert "65,536" in result.output and "--use_fused_mlp enable" in result.output
    assert "--use_fp8_context_fmha enable" in result.output and "Recommended TP: 1" in result.output
    assert (
        "make engine MODEL=Llama-3.1-Swallow-8B-Instruct-v0.5 QUANT=fp8 KV_CACHE_DTYPE=fp8 TP=1"
        in result.output
    )


def test_awq_with_fp8_kv_warns_about_paged_context_fmha():
    result = cli("--model", EIGHT_B, "--gpu", "h100", "--quant", "int4_awq", "--kv-cache-dtype", "fp8")
    assert result.exit_code == 0 and "paged context FMHA is turned off" in result.output


def test_local_hf_dir_and_trtllm_checkpoint_dir(tiny_model_dir, tmp_path):
    hf = json.loads(cli("--model", str(tiny_model_dir), "--gpu", "l40s", "--tp", "2", "--json").output)
    assert hf["model_source"] == "hf-dir" and hf["kv_bytes_per_token_per_gpu"] == 2 * 2 * 1 * 8 * 2
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    config = {
        "architecture": "LlamaForCausalLM", "dtype": "bfloat16", "vocab_size": 128256, "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_size": 128, "mapping": {"world_size": 2, "tp_size": 2, "pp_size": 1},
        "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"},
    }  # fmt: skip
    (ckpt / "config.json").write_text(json.dumps(config))
    data = json.loads(cli("--model", str(ckpt), "--gpu", "h100", "--json").output)
    assert (data["quant"], data["kv_cache_quant_algo"], data["tp"]) == ("fp8", "FP8", 2)
    assert data["kv_bytes_per_token_per_gpu"] == 32 * 2 * 4 * 128 * 1
    conflict = cli("--model", str(ckpt), "--gpu", "h100", "--tp", "4")
    assert conflict.exit_code == 1 and "converted with --tp 2" in conflict.output


def test_unknown_model_is_explained():
    result = cli("--model", "nobody/nothing", "--gpu", "h100")
    assert result.exit_code == 1 and "swallow-trt models" in result.output


@pytest.mark.parametrize(
    "gpu, memory_gb, tb_s, fp8",
    [("l4", 24, 0.3, True), ("a10g", 24, 0.6, False), ("h100-pcie", 80, 2.0, True), ("h100-nvl", 94, 3.9, True),
     ("gh200", 96, 4.0, True), ("gh200-144g", 144, 4.9, True)],
)  # fmt: skip
def test_more_gpu_profiles_carry_their_spec_sheet_figures(gpu, memory_gb, tb_s, fp8):
    profile = get_profile(gpu)
    assert profile.memory_bytes == memory_gb * GB and profile.bandwidth_bytes_per_s == tb_s * 1000 * GB
    assert profile.fp8 is fp8
    result = cli("--model", EIGHT_B, "--gpu", gpu, "--quant", "fp8", "--json")
    assert result.exit_code == (0 if fp8 else 1), result.output  # FP8 on Ampere is refused


def test_gpu_memory_gb_replaces_the_profile_s_memory_or_stands_alone():
    def gpu_and_tokens(*args: str) -> tuple[dict, int]:
        result = cli("--model", EIGHT_B, *args, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        return data["gpu"], data["kv_tokens"]

    h100, h100_tokens = gpu_and_tokens("--gpu", "h100")
    smaller, smaller_tokens = gpu_and_tokens("--gpu", "h100", "--gpu-memory-gb", "40")
    assert smaller_tokens < h100_tokens
    assert (
        smaller["memory_bytes"] == 40 * GB
        and smaller["bandwidth_bytes_per_s"] == h100["bandwidth_bytes_per_s"]
    )
    assert smaller["name"] == "h100" and smaller["description"].endswith("with 40 GB")
    alone, _ = gpu_and_tokens("--gpu-memory-gb", "24")
    assert (
        alone["memory_bytes"] == 24 * GB and alone["name"] == "custom" and "unknown" in alone["description"]
    )
    refused = cli("--model", EIGHT_B, "--gpu-memory-gb", "12", "--tp", "1")
    assert refused.exit_code == 1 and "12 GB" in refused.output  # 16 GB of bf16 weights do not fit
    neither = cli("--model", EIGHT_B)
    assert neither.exit_code == 2 and "Give --gpu, --gpu-memory-gb, or both" in neither.output
