"""Quantized convert / reference runtime / verify on the tiny model: docs/trtllm-checkpoint.md names, closed forms, TP, reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from trt_build.cli import main
from trt_build.convert.options import QuantOptions
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.formats.trtllm_config import ALLOWED_QUANTIZATION_KEYS
from trt_build.quant import numerics as qf
from trt_build.quant.calibration_result import CalibrationResult
from trt_build.verify.reference_runtime import load_checkpoint
from trt_build.verify.trtllm_reader import checkpoint_fake_quant, checkpoint_state_dict

D, H, K, HEAD, INTER = 64, 8, 2, 8, 128  # the tiny preset
CALIB = {"calib_size": 4, "calib_seq_len": 32}
LINEARS = ("attention.qkv", "attention.dense", "mlp.fc", "mlp.gate", "mlp.proj")
GROUP = {"attention.qkv": "qkv", "attention.dense": "o", "mlp.fc": "gate_up", "mlp.gate": "gate_up"}
GROUP["mlp.proj"] = "down"


def convert(model: Path, out: Path, quant: str, tp: int = 1, **options) -> Path:
    return convert_checkpoint(
        model, out, tp=tp, quant=quant, sha256=False, quant_options=QuantOptions(**{**CALIB, **options})
    )


def full_shapes(tp: int) -> dict[str, tuple[int, int]]:
    kv_rows = max(1, K // tp) * HEAD
    return {
        "attention.qkv": (H * HEAD // tp + 2 * kv_rows, D),
        "attention.dense": (D, H * HEAD // tp),
        "mlp.fc": (INTER // tp, D),
        "mlp.gate": (INTER // tp, D),
        "mlp.proj": (D, INTER // tp),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quant")


@pytest.fixture(scope="module")
def fp8_tp2(tiny_model_dir: Path, work: Path) -> Path:
    return convert(tiny_model_dir, work / "fp8-tp2", "fp8", tp=2, kv_cache_dtype="fp8")


@pytest.fixture(scope="module")
def awq_tp2(tiny_model_dir: Path, work: Path) -> Path:
    return convert(tiny_model_dir, work / "awq-tp2", "int4_awq", tp=2, group_size=16)


def calibration(checkpoint: Path) -> CalibrationResult:
    return CalibrationResult.load(checkpoint / "calibration")


def test_fp8_tp2_names_dtypes_shapes_and_shared_scales(fp8_tp2: Path, tiny_model_dir: Path) -> None:
    config = json.loads((fp8_tp2 / "config.json").read_text())
    assert config["quantization"] == {
        "quant_algo": "FP8",
        "kv_cache_quant_algo": "FP8",
        "exclude_modules": ["lm_head"],
    }
    assert config["quantization"].keys() <= ALLOWED_QUANTIZATION_KEYS
    result = calibration(fp8_tp2)
    ranks = [load_file(fp8_tp2 / f"rank{r}.safetensors") for r in range(2)]
    hf = load_file(tiny_model_dir / "model.safetensors")
    for layer in range(2):
        for linear, shape in full_shapes(2).items():
            prefix = f"transformer.layers.{layer}.{linear}"
            group = GROUP[linear]
            ws = qf.fp8_scale(result.group_weight_amax(layer, group))
            act = qf.fp8_scale(result.group_input_amax(layer, group))
            for rank in ranks:
                assert rank[f"{prefix}.weight"].dtype == torch.float8_e4m3fn
                assert tuple(rank[f"{prefix}.weight"].shape) == shape
                for name, value in (("weights_scaling_factor", ws), ("activation_scaling_factor", act)):
                    scale = rank[f"{prefix}.{name}"]
                    assert scale.dtype == torch.float32 and tuple(scale.shape) == (1,)
                    assert scale.item() == value.item()  # identical on every rank, closed form
            kv = ranks[0][f"transformer.layers.{layer}.attention.kv_cache_scaling_factor"]
            assert kv.dtype == torch.float32 and tuple(kv.shape) == (1,) and kv.item() == 1.0
        # shared = max of the parts, over the full HF matrices
        parts = [hf[f"model.layers.{layer}.self_attn.{p}_proj.weight"].abs().amax().float() for p in "qkv"]
        assert result.group_weight_amax(layer, "qkv").item() == max(parts).item()
        parts = [hf[f"model.layers.{layer}.mlp.{p}_proj.weight"].abs().amax().float() for p in ("gate", "up")]
        assert result.group_weight_amax(layer, "gate_up").item() == max(parts).item()
        amaxes = [result.input_amax(layer, f"self_attn.{p}_proj") for p in "qkv"]
        assert result.group_input_amax(layer, "qkv") == max(amaxes)
    # lm_head, embedding and norms stay bf16
    for name in ("lm_head.weight", "transformer.vocab_embedding.weight", "transformer.ln_f.weight"):
        assert ranks[1][name].dtype == torch.bfloat16
    # the e4m3 values are the closed form of the rank's slice
    q = hf["model.layers.0.self_attn.q_proj.weight"][: H * HEAD // 2]
    expected = qf.fp8_quantize(q, qf.fp8_scale(result.group_weight_amax(0, "qkv")))
    got = ranks[0]["transformer.layers.0.attention.qkv.weight"][: H * HEAD // 2]
    assert torch.equal(got.view(torch.uint8), expected.view(torch.uint8))


def test_fp8_tp1_scales_equal_tp2(fp8_tp2: Path, tiny_model_dir: Path, work: Path) -> None:
    tp1 = convert(tiny_model_dir, work / "fp8-tp1", "fp8", calibration_dir=fp8_tp2 / "calibration")
    one, two = load_file(tp1 / "rank0.safetensors"), load_file(fp8_tp2 / "rank1.safetensors")
    for layer in range(2):
        for linear, shape in full_shapes(1).items():
            prefix = f"transformer.layers.{layer}.{linear}"
            assert tuple(one[f"{prefix}.weight"].shape) == shape
            assert one[f"{prefix}.activation_scaling_factor"] == two[f"{prefix}.activation_scaling_factor"]
    assert "transformer.layers.0.attention.kv_cache_scaling_factor" not in one  # --kv-cache-dtype auto


def test_awq_tp2_packing_prequant_and_error_bound(awq_tp2: Path, tiny_model_dir: Path) -> None:
    config = json.loads((awq_tp2 / "config.json").read_text())
    assert config["quantization"] == {
        "quant_algo": "W4A16_AWQ",
        "kv_cache_quant_algo": None,
        "group_size": 16,
        "has_zero_point": False,
        "pre_quant_scale": True,
        "exclude_modules": ["lm_head"],
    }
    result = calibration(awq_tp2)
    hf = load_file(tiny_model_dir / "model.safetensors")
    ranks = [load_file(awq_tp2 / f"rank{r}.safetensors") for r in range(2)]
    for rank_index, rank in enumerate(ranks):
        for linear, (out_r, in_r) in full_shapes(2).items():
            prefix = f"transformer.layers.1.{linear}"
            weight, scales = rank[f"{prefix}.weight"], rank[f"{prefix}.weights_scaling_factor"]
            pre_quant = rank[f"{prefix}.prequant_scaling_factor"]
            assert weight.dtype == torch.int8 and tuple(weight.shape) == (out_r // 2, in_r)
            assert scales.dtype == torch.float32 and tuple(scales.shape) == (out_r, in_r // 16)
            assert pre_quant.dtype == torch.bfloat16 and tuple(pre_quant.shape) == (in_r,)
            hf_linear = {"o": "self_attn.o_proj", "down": "mlp.down_proj"}.get(GROUP[linear])
            if hf_linear:  # row linear: prequant split with the input
                full = result.pre_quant_scale(1, hf_linear)
                assert torch.equal(pre_quant, full[rank_index * in_r : (rank_index + 1) * in_r].bfloat16())
        qkv = rank["transformer.layers.1.attention.qkv.prequant_scaling_factor"]
        for p in "qkv":  # one prequant shared by q/k/v, replicated on column linears
            assert torch.equal(qkv, result.pre_quant_scale(1, f"self_attn.{p}_proj").bfloat16())
    # dequantized rank-0 fc within the format bound: |W - deq| <= scale/2 (in smoothed units) * prequant
    rank = ranks[0]
    q = qf.unpack_int4_rows(rank["transformer.layers.1.mlp.fc.weight"])
    scales = rank["transformer.layers.1.mlp.fc.weights_scaling_factor"]
    pre_quant = rank["transformer.layers.1.mlp.fc.prequant_scaling_factor"].float()
    deq = qf.awq_dequantize(q, scales, pre_quant, 16)
    source = hf["model.layers.1.mlp.gate_proj.weight"][: INTER // 2].float()
    bound = (scales.repeat_interleave(16, dim=1) / 2) * pre_quant.reshape(1, -1)
    assert ((deq - source).abs() <= bound * (1 + 1e-3) + 1e-6).all()
    assert (q.min() >= -8) and (q.max() <= 7) and q.abs().max() >= 7


@pytest.mark.parametrize(("quant", "algo"), [("int8_wo", "W8A16"), ("int4_wo", "W4A16")])
def test_weight_only_writes_bf16_and_null_exclude(
    tiny_model_dir: Path, work: Path, quant: str, algo: str
) -> None:
    out = convert(tiny_model_dir, work / quant, quant, tp=2)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {
        "quant_algo": algo,
        "kv_cache_quant_algo": None,
        "exclude_modules": None,
    }
    rank = load_file(out / "rank1.safetensors")
    assert all(tensor.dtype == torch.bfloat16 for tensor in rank.values())
    assert not (out / "calibration").exists()  # weight-only needs no data
    # the reference runtime applies the build-time per-channel fake quant to each rank's shard
    _, state = checkpoint_state_dict(out)
    bits = 8 if quant == "int8_wo" else 4
    shards = [
        load_file(out / f"rank{r}.safetensors")["transformer.layers.0.attention.dense.weight"]
        for r in range(2)
    ]
    expected = torch.cat([qf.weight_only_fake_quant(s, bits) for s in shards], dim=1)
    assert torch.equal(state["model.layers.0.self_attn.o_proj.weight"], expected)


def test_reference_runtime_dequantizes_fp8_and_awq(
    fp8_tp2: Path, awq_tp2: Path, tiny_model_dir: Path
) -> None:
    hf = load_file(tiny_model_dir / "model.safetensors")
    result = calibration(fp8_tp2)
    _, state = checkpoint_state_dict(fp8_tp2, torch.float32)
    scale = qf.fp8_scale(result.group_weight_amax(0, "gate_up"))
    expected = qf.fp8_dequantize(qf.fp8_quantize(hf["model.layers.0.mlp.up_proj.weight"], scale), scale)
    assert torch.equal(state["model.layers.0.mlp.up_proj.weight"], expected)
    awq = calibration(awq_tp2)
    _, state = checkpoint_state_dict(awq_tp2, torch.float32)
    weight = hf["model.layers.0.self_attn.o_proj.weight"]
    pre_quant = awq.pre_quant_scale(0, "self_attn.o_proj").bfloat16()
    halves = []
    for r in range(2):  # row linear: each rank quantizes its input half with its prequant slice
        cols = slice(r * H * HEAD // 2, (r + 1) * H * HEAD // 2)
        q, s = qf.awq_quantize(weight[:, cols].bfloat16(), pre_quant[cols], 16)
        halves.append(qf.awq_dequantize(q, s, pre_quant[cols], 16))
    assert torch.allclose(
        state["model.layers.0.self_attn.o_proj.weight"], torch.cat(halves, dim=1), atol=1e-6
    )


def test_fp8_activation_and_kv_fake_quant_are_installed(fp8_tp2: Path) -> None:
    fake = checkpoint_fake_quant(fp8_tp2)
    result = calibration(fp8_tp2)
    assert len(fake.activation_scales) == 2 * 7 and len(fake.kv_cache_scales) == 2
    assert fake.activation_scales["model.layers.1.self_attn.k_proj"] == pytest.approx(
        qf.fp8_scale(result.group_input_amax(1, "qkv")).item()
    )
    model = load_checkpoint(fp8_tp2)
    assert model.config._attn_implementation == "swallow_trt_fp8_kv_sdpa"
    assert model.model.layers[0].self_attn.kv_cache_scale == 1.0
    seen = {}
    linear = model.model.layers[0].mlp.down_proj
    linear.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    model(torch.tensor([[128000, 9906, 11, 1917]]))
    scale = fake.activation_scales["model.layers.0.mlp.down_proj"]
    x = seen["x"]  # already fake-quantized by the earlier hook: on the e4m3 grid of its scale
    assert torch.equal(qf.fp8_fake_quant(x, scale), x)


def test_verify_passes_writes_report_and_json(
    fp8_tp2: Path, awq_tp2: Path, tiny_model_dir: Path, builtin_prompts: Path
) -> None:
    # FP8 on the 34 held-out texts (the default for a quantized checkpoint), AWQ on the 8 built-in ones
    for checkpoint, precision, texts in (
        (fp8_tp2, "FP8+FP8_KV", []),
        (awq_tp2, "W4A16_AWQ", ["--prompts", str(builtin_prompts)]),
    ):
        args = [
            "verify",
            "--model-dir",
            str(tiny_model_dir),
            "--checkpoint",
            str(checkpoint),
            "--json",
            *texts,
        ]
        run = CliRunner().invoke(main, args)
        assert run.exit_code == 0, run.output
        report = json.loads(run.output)
        assert report["precision"] == precision and report["text_set"] == ("prompts" if texts else "eval")
        assert set(report["languages"]) == {"ja", "en"}
        for figures in report["languages"].values():
            assert 0.99 < figures["cosine_similarity"] < 1.0  # quantized: close, not identical
            assert figures["cosine_similarity"] >= report["thresholds"]["min_cosine_similarity"]
        assert len(report["calibration"]["layers"]) == 2
        text = (checkpoint / "QUANT_REPORT.md").read_text()
        assert "| ja |" in text and "| en |" in text and "## Per layer" in text and "PASSED" in text


def test_verify_fails_on_a_corrupted_scale(
    fp8_tp2: Path, tiny_model_dir: Path, tmp_path: Path, builtin_prompts: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(fp8_tp2, bad)
    for rank in range(2):
        tensors = load_file(bad / f"rank{rank}.safetensors")
        name = "transformer.layers.1.mlp.proj.weights_scaling_factor"
        tensors[name] = tensors[name] * 4
        save_file(tensors, bad / f"rank{rank}.safetensors")
    args = ["--model-dir", str(tiny_model_dir), "--checkpoint", str(bad), "--prompts", str(builtin_prompts)]
    run = CliRunner().invoke(main, ["verify", *args])
    assert run.exit_code == 1 and "cosine similarity" in run.output and "FAILED" in run.output


def test_calibration_reuse_gives_identical_rank_files(
    awq_tp2: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    reused = convert(
        tiny_model_dir,
        tmp_path / "reused",
        "int4_awq",
        tp=2,
        group_size=16,
        calibration_dir=awq_tp2 / "calibration",
    )
    for rank in range(2):
        name = f"rank{rank}.safetensors"
        assert (reused / name).read_bytes() == (awq_tp2 / name).read_bytes()
    manifest = json.loads((reused / "manifest.json").read_text())
    assert manifest["calibration"]["reused_from"] == str(awq_tp2 / "calibration")
    assert manifest["calibration"]["data"]["source"] == "builtin"
    with pytest.raises(Exception, match="group size 16"):
        convert(
            tiny_model_dir,
            tmp_path / "g32",
            "int4_awq",
            group_size=32,
            calibration_dir=awq_tp2 / "calibration",
        )


def test_manifest_records_calibration(awq_tp2: Path) -> None:
    record = json.loads((awq_tp2 / "manifest.json").read_text())["calibration"]
    assert record["calib_size"] == 4 and record["calib_seq_len"] == 32 and record["device"] == "cpu"
    assert (
        len(record["data"]["tokens_sha256"]) == 64
        and record["tokens_sha256"] == record["data"]["tokens_sha256"]
    )
    assert len(record["seconds_per_layer"]) == 2 and record["algorithms"] == ["max", "awq"]
    assert {"alpha", "mse_rtn", "mse_awq"} <= record["layers"][0]["qkv"].keys()


def test_bad_inputs_are_clear_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    def cli(*extra: str):
        args = ["convert", "--model-dir", str(tiny_model_dir), "--output", str(tmp_path / "out"), *extra]
        return CliRunner().invoke(main, args)

    run = cli("--quant", "int4_awq", "--tp", "4", "--group-size", "32")
    assert (
        run.exit_code != 0
        and "does not divide the input dimension" in run.output
        and "o_proj 16" in run.output
    )
    assert "--group-size" in run.output and "--tp" in run.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    run = cli("--quant", "fp8", "--calib-data", str(empty))
    assert run.exit_code != 0 and "empty" in run.output
    run = cli("--quant", "fp8", "--calib-seq-len", "200000")
    assert run.exit_code != 0 and "context" in run.output
    assert not (tmp_path / "out").exists()


def test_fp8_pipeline_parallel_merges_like_tensor_parallel(
    fp8_tp2: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    pp2 = convert_checkpoint(
        tiny_model_dir,
        tmp_path / "pp2",
        tp=2,
        pp=2,
        quant="fp8",
        sha256=False,
        quant_options=QuantOptions(kv_cache_dtype="fp8", calibration_dir=fp8_tp2 / "calibration"),
    )
    _, tp_state = checkpoint_state_dict(fp8_tp2, torch.float32)
    _, pp_state = checkpoint_state_dict(pp2, torch.float32)
    assert tp_state.keys() == pp_state.keys()
    assert all(torch.equal(tp_state[name], pp_state[name]) for name in tp_state)
    assert checkpoint_fake_quant(pp2) == checkpoint_fake_quant(fp8_tp2)
    stage1 = load_file(pp2 / "rank2.safetensors")
    assert "transformer.layers.0.attention.kv_cache_scaling_factor" in stage1  # global layer 1, local 0


# --- any source convert accepts can be calibrated; the checked cast on both targets -------------------


def test_single_file_with_another_name_converts_with_fp8(
    fp8_tp2: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Calibration reads the source through convert's reader: `consolidated.safetensors` works too."""
    model = tmp_path / "renamed"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").rename(model / "consolidated.safetensors")
    out = tmp_path / "fp8"
    args = ["convert", "--model-dir", str(model), "--output", str(out), "--quant", "fp8", "--no-sha256"]
    run = CliRunner().invoke(main, [*args, "--calib-size", "4", "--calib-seq-len", "32"])
    assert run.exit_code == 0, run.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in manifest["source"]["files"]] == ["config.json", "consolidated.safetensors"]
    assert len(manifest["calibration"]["seconds_per_layer"]) == 2
    # the same data through the same layers: the calibration of the standard-named model
    renamed, standard = calibration(out), calibration(fp8_tp2)
    assert renamed.tensors.keys() == standard.tensors.keys()
    assert all(torch.equal(renamed.tensors[k], standard.tensors[k]) for k in standard.tensors)
    assert (
        load_file(out / "rank0.safetensors")["transformer.layers.1.mlp.fc.weight"].dtype
        == torch.float8_e4m3fn
    )


@pytest.mark.parametrize("target", ["engine", "pytorch"])
def test_float16_overflow_is_refused_before_calibration(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    model = tmp_path / "big"
    shutil.copytree(tiny_model_dir, model)
    tensors = load_file(model / "model.safetensors")
    tensors["model.layers.0.post_attention_layernorm.weight"][7] = 1e5
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})

    def calibration_must_not_run(*args, **kwargs):  # hours on a 70B: the range check comes first
        raise AssertionError("calibration ran before the float16 range check")

    monkeypatch.setattr("trt_build.convert.calibration.run_calibration", calibration_must_not_run)
    args = ["convert", "--model-dir", str(model), "--output", str(tmp_path / "out"), "--target", target,
            "--quant", "fp8", "--dtype", "float16", "--calib-size", "2", "--calib-seq-len", "16"]  # fmt: skip
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 1, run.output
    assert "model.layers.0.post_attention_layernorm.weight" in run.output and "float16" in run.output
    assert "--dtype bfloat16" in run.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]  # no output, no temporary directory
