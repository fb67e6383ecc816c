"""`convert --target pytorch`: the ModelOpt unified HF checkpoint, tensor by tensor against
docs/modelopt-checkpoint.md §1 (config files) and §2 (per-linear tensors), read back by the
reference runtime / verify / the CPU engine / `build --target pytorch`, and against ModelOpt 0.47.0 itself
(`peer` marker: its own venv, `make modelopt-peer`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from trt_build.cli import main
from trt_build.common.errors import SwallowTrtError
from trt_build.convert.options import QuantOptions
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.formats.kinds import HF_CHECKPOINT, checkpoint_kind
from trt_build.quant import numerics as qf
from trt_build.quant.calibration_result import FUSED_GROUPS, CalibrationResult
from trt_build.source.hf_config import hf_config_dict, read_hf_config
from trt_build.source.tiny_model import hf_tensor_layout
from trt_build.verify.modelopt_reader import unified_state_dict

ROOT = Path(__file__).resolve().parents[1]
CALIB = {"calib_size": 4, "calib_seq_len": 32}
LINEARS = tuple(linear for members in FUSED_GROUPS.values() for linear in members)
GROUP_OF = {linear: group for group, members in FUSED_GROUPS.items() for linear in members}
EXCLUDED = ["lm_head", "model.embed_tokens"]


def export_unified_checkpoint(model: Path, out: Path, quant: str, options: QuantOptions, **more) -> Path:
    """`convert --target pytorch` from Python."""
    return convert_checkpoint(model, out, target="pytorch", quant=quant, quant_options=options, **more)


def export(model: Path, out: Path, quant: str, **options) -> Path:
    return export_unified_checkpoint(model, out, quant, QuantOptions(**{**CALIB, **options}), sha256=False)


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def tensors_of(directory: Path) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for path in sorted(directory.glob("*.safetensors")):
        found.update(load_file(path))
    return found


def expected_layout(
    arch, quant: str, fp8_kv: bool, group_size: int = 128
) -> dict[str, tuple[torch.dtype, tuple]]:
    """docs/modelopt-checkpoint.md §2 as a table: every tensor name -> (dtype, shape)."""
    expected: dict[str, tuple[torch.dtype, tuple]] = {}
    for name, dtype, shape in hf_tensor_layout(arch, torch.bfloat16):
        local = name.split(".", 3)[-1].removesuffix(".weight")
        if local not in LINEARS:
            expected[name] = (dtype, shape)
            continue
        prefix, (out_features, in_features) = name.removesuffix(".weight"), shape
        if quant == "fp8":
            expected[f"{prefix}.weight"] = (torch.float8_e4m3fn, (out_features, in_features))
            expected[f"{prefix}.weight_scale"] = (torch.float32, ())
            expected[f"{prefix}.input_scale"] = (torch.float32, ())
        else:
            expected[f"{prefix}.weight"] = (torch.uint8, (out_features // 2, in_features))
            expected[f"{prefix}.weight_scale"] = (torch.float32, (out_features, in_features // group_size))
            if local in ("self_attn.o_proj", "mlp.down_proj"):
                expected[f"{prefix}.pre_quant_scale"] = (torch.bfloat16, (in_features,))
        if fp8_kv and local in ("self_attn.k_proj", "self_attn.v_proj"):
            letter = local[-6]  # k or v
            expected[f"{prefix}.{letter}_scale"] = (torch.float32, ())
    return expected


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unified")


@pytest.fixture(scope="module")
def fp8(tiny_model_dir: Path, work: Path) -> Path:
    return export(tiny_model_dir, work / "fp8", "fp8")


@pytest.fixture(scope="module")
def fp8_kv(tiny_model_dir: Path, work: Path) -> Path:
    return export(tiny_model_dir, work / "fp8-kv", "fp8", kv_cache_dtype="fp8")


@pytest.fixture(scope="module")
def awq(tiny_model_dir: Path, work: Path) -> Path:
    return export(tiny_model_dir, work / "awq", "int4_awq", group_size=16)


@pytest.fixture(scope="module")
def awq_kv(tiny_model_dir: Path, awq: Path, work: Path) -> Path:
    """AWQ + FP8 KV from the AWQ run's calibration (it always records K/V amaxes)."""
    options = {"group_size": 16, "kv_cache_dtype": "fp8", "calibration_dir": awq / "calibration"}
    return export(tiny_model_dir, work / "awq-kv", "int4_awq", **options)


@pytest.fixture(scope="module")
def source(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    return tensors_of(tiny_model_dir)


# ---------------------------------------------------------------- files and config (docs/modelopt-checkpoint.md §1)


@pytest.mark.parametrize(
    ("name", "quant_algo", "kv", "extra"),
    [
        ("fp8", "FP8", None, {}),
        ("fp8_kv", "FP8", "FP8", {}),
        ("awq", "W4A16_AWQ", None, {"group_size": 16, "has_zero_point": False, "pre_quant_scale": True}),
    ],
)
def test_quant_config_files_agree_with_the_reference(request, name, quant_algo, kv, extra, tiny_model_dir):
    checkpoint: Path = request.getfixturevalue(name)
    hf_quant = json.loads((checkpoint / "hf_quant_config.json").read_text())
    assert hf_quant == {
        "producer": {"name": "modelopt", "version": "0.47.0"},
        "quantization": {
            "quant_algo": quant_algo,
            "kv_cache_quant_algo": kv,
            **extra,
            "exclude_modules": EXCLUDED,
        },
    }
    config = json.loads((checkpoint / "config.json").read_text())
    inline = config.pop("quantization_config")
    fp8_group = {"num_bits": 8, "type": "float", "dynamic": False}
    expected = {"quant_method": "modelopt", "quant_algo": quant_algo, "producer": hf_quant["producer"]}
    expected["ignore"] = hf_quant["quantization"]["exclude_modules"]
    if quant_algo == "FP8":  # only FP8 gets config_groups inline; AWQ's group size lives only in the file
        expected["config_groups"] = {
            "group_0": {"weights": fp8_group, "input_activations": fp8_group, "targets": ["Linear"]}
        }
    if kv:
        expected["kv_cache_scheme"] = fp8_group
    assert inline == expected
    # the rest is the source config in both transformers forms
    assert config == hf_config_dict(read_hf_config(tiny_model_dir), "both")
    assert "rope_theta" in config and "rope_parameters" in config
    for copied in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (checkpoint / copied).read_bytes() == (tiny_model_dir / copied).read_bytes()
    kind = checkpoint_kind(checkpoint)
    assert (kind.kind, kind.quant_algo, kind.kv_cache_quant_algo) == (HF_CHECKPOINT, quant_algo, kv)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    assert manifest["target"] == "pytorch" and manifest["quantization"] == hf_quant["quantization"]
    assert manifest["calibration"]["calib_size"] == CALIB["calib_size"]
    assert [entry["name"] for entry in manifest["files"]] == ["model.safetensors"]
    assert not list(checkpoint.parent.glob(f".{checkpoint.name}*"))  # atomic: no temp dir left behind


# ---------------------------------------------------------------- tensors (docs/modelopt-checkpoint.md §2)


@pytest.mark.parametrize(
    ("name", "quant", "kv", "group"),
    [
        ("fp8", "fp8", False, 128),
        ("fp8_kv", "fp8", True, 128),
        ("awq", "int4_awq", False, 16),
        ("awq_kv", "int4_awq", True, 16),
    ],
)
def test_every_tensor_name_dtype_and_shape_is_the_reference_one(
    request, name, quant, kv, group, tiny_model_dir
):
    checkpoint: Path = request.getfixturevalue(name)
    got = {key: (value.dtype, tuple(value.shape)) for key, value in tensors_of(checkpoint).items()}
    assert got == expected_layout(read_hf_config(tiny_model_dir), quant, kv, group)


def test_fp8_scales_per_linear_and_shared_input_scales(fp8_kv: Path, source):
    tensors = tensors_of(fp8_kv)
    calibration = CalibrationResult.load(fp8_kv / "calibration")
    for layer in range(2):
        for linear in LINEARS:
            prefix = f"model.layers.{layer}.{linear}"
            weight = source[f"{prefix}.weight"]
            # q/k/v (gate/up) keep their own weight scale: amax of this linear / 448
            scale = tensors[f"{prefix}.weight_scale"]
            assert scale.item() == pytest.approx(weight.float().abs().max().item() / 448, rel=1e-6)
            # the input scale is the fused group's: identical over q/k/v and over gate/up
            group_amax = calibration.group_input_amax(layer, GROUP_OF[linear])
            assert tensors[f"{prefix}.input_scale"].item() == pytest.approx(group_amax.item() / 448, rel=1e-6)
            # dequantized within the e4m3 bound: half a step of 3 mantissa bits, or of the subnormal step
            deq = tensors[f"{prefix}.weight"].float() * scale
            bound = weight.float().abs() * 2.0**-4 + scale * 2.0**-10
            assert ((deq - weight.float()).abs() <= bound + 1e-12).all()
        shared = {f"model.layers.{layer}.{m}.input_scale" for m in FUSED_GROUPS["qkv"]}
        assert len({tensors[key].item() for key in shared}) == 1
        gate_up = {f"model.layers.{layer}.{m}.input_scale" for m in FUSED_GROUPS["gate_up"]}
        assert len({tensors[key].item() for key in gate_up}) == 1
        assert (
            tensors[f"model.layers.{layer}.self_attn.q_proj.weight_scale"]
            != tensors[f"model.layers.{layer}.self_attn.k_proj.weight_scale"]
        )
        k_amax, v_amax = calibration.kv_amax(layer)
        attention = f"model.layers.{layer}.self_attn"
        assert tensors[f"{attention}.k_proj.k_scale"].item() == pytest.approx(k_amax.item() / 448, rel=1e-6)
        assert tensors[f"{attention}.v_proj.v_scale"].item() == pytest.approx(v_amax.item() / 448, rel=1e-6)
    # FP8: norms and the excluded embedding / lm_head are byte-identical to the source
    for key in (
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.norm.weight",
        "model.layers.1.input_layernorm.weight",
    ):
        assert torch.equal(tensors[key], source[key])


def test_awq_folds_pre_quant_scales_into_the_norms_and_keeps_them_on_o_and_down(awq: Path, source):
    tensors = tensors_of(awq)
    calibration = CalibrationResult.load(awq / "calibration")
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    for layer in range(2):
        prefix = f"model.layers.{layer}"
        for norm, first in (
            ("input_layernorm", "self_attn.q_proj"),
            ("post_attention_layernorm", "mlp.gate_proj"),
        ):
            pre_quant = calibration.pre_quant_scale(layer, first).to(torch.bfloat16)
            folded, original = tensors[f"{prefix}.{norm}.weight"], source[f"{prefix}.{norm}.weight"]
            assert torch.equal(folded, (original.float() * pre_quant.float()).to(torch.bfloat16))
            if (pre_quant.float() - 1).abs().max() > 0.02:  # AWQ may keep identity (alpha -1) on tiny data
                assert not torch.equal(folded, original)
            # what the runtime computes: folded * x == norm * x * pre_quant, up to the bf16 rounding of the fold
            torch.testing.assert_close(
                folded.float() * x, original.float() * x * pre_quant.float(), rtol=2**-8, atol=0
            )
        for linear in LINEARS:
            weight = source[f"{prefix}.{linear}.weight"].float()
            keeps = linear in ("self_attn.o_proj", "mlp.down_proj")
            assert (f"{prefix}.{linear}.pre_quant_scale" in tensors) == keeps
            assert f"{prefix}.{linear}.input_scale" not in tensors
            pre_quant = calibration.pre_quant_scale(layer, linear).to(torch.bfloat16).float()
            if keeps:
                assert torch.equal(tensors[f"{prefix}.{linear}.pre_quant_scale"].float(), pre_quant)
            packed, scales = tensors[f"{prefix}.{linear}.weight"], tensors[f"{prefix}.{linear}.weight_scale"]
            q = qf.unpack_int4_rows(packed)  # rows 2i low nibble, 2i+1 high nibble
            assert torch.equal(qf.pack_int4_rows_modelopt_hf(q), packed)
            # the smoothed weight W / pre_quant is within half a step of each group's scale
            deq = qf.int4_group_dequantize(q, scales, 16)
            smoothed = weight / pre_quant.reshape(1, -1)
            step = scales.repeat_interleave(16, dim=1)
            assert ((deq - smoothed).abs() <= step / 2 + 1e-6).all()
    for key in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert torch.equal(tensors[key], source[key])


# ---------------------------------------------------------------- reading it back


@pytest.mark.parametrize(
    ("name", "precision"), [("fp8_kv", "FP8+FP8_KV"), ("awq", "W4A16_AWQ"), ("awq_kv", "W4A16_AWQ+FP8_KV")]
)
def test_verify_passes_within_the_thresholds(request, name, precision, tiny_model_dir, builtin_prompts):
    checkpoint: Path = request.getfixturevalue(name)
    # the 8 built-in texts: the 34 held-out ones run in test_convert_quant
    args = [
        "--model-dir",
        str(tiny_model_dir),
        "--checkpoint",
        str(checkpoint),
        "--prompts",
        str(builtin_prompts),
    ]
    result = CliRunner().invoke(main, ["verify", *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["precision"] == precision and report["passed"]
    assert set(report["languages"]) == {"ja", "en"}
    assert report["quantization"]["quant_algo"] == precision.split("+")[0]
    assert "Per layer" in (checkpoint / "QUANT_REPORT.md").read_text()


def test_fake_quant_of_fp8_uses_the_input_scales_and_the_backends_unit_kv_scale(fp8_kv: Path):
    _, state, fake_quant = unified_state_dict(fp8_kv)
    tensors = tensors_of(fp8_kv)
    assert (
        fake_quant.activation_scales["model.layers.0.self_attn.k_proj"]
        == tensors["model.layers.0.self_attn.k_proj.input_scale"].item()
    )
    assert fake_quant.kv_cache_scales == {f"model.layers.{i}.self_attn": 1.0 for i in range(2)}
    deq = (
        tensors["model.layers.0.mlp.up_proj.weight"].float()
        * tensors["model.layers.0.mlp.up_proj.weight_scale"]
    )
    assert torch.equal(state["model.layers.0.mlp.up_proj.weight"].float(), deq.to(torch.bfloat16).float())
    assert not any(key.endswith(("_scale", "input_scale")) for key in state)


def test_the_cpu_engine_loads_and_generates(awq: Path):
    from triton_repo.models.cpu_engine import CpuEngine, SamplingParams, load_model

    model = load_model(awq)
    prompt = [128000, 9906, 11, 1917]
    with torch.inference_mode():
        first = int(model(input_ids=torch.tensor([prompt])).logits[0, -1].argmax())
    tokens = list(CpuEngine(model, 16, 32).generate(prompt, SamplingParams(max_tokens=6)))
    assert len(tokens) == 6 and tokens[0] == first


def test_sharded_output_has_an_index_and_loads_the_same(tiny_model_dir: Path, fp8_kv: Path, work: Path):
    sharded = export_unified_checkpoint(
        tiny_model_dir,
        work / "fp8-sharded",
        "fp8",
        QuantOptions(kv_cache_dtype="fp8", calibration_dir=fp8_kv / "calibration", **CALIB),
        sha256=False,
        max_shard_bytes=8 << 20,
    )
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and files == sorted(p.name for p in sharded.glob("*.safetensors"))
    for file in files:
        with safe_open(sharded / file, framework="pt") as handle:
            assert all(index["weight_map"][key] == file for key in handle.keys())  # noqa: SIM118
    one, many = tensors_of(fp8_kv), tensors_of(sharded)
    assert one.keys() == many.keys() and all(same_bytes(one[k], many[k]) for k in one)
    assert sum(p.stat().st_size for p in sharded.glob("*.safetensors")) > index["metadata"]["total_size"]
    arch_one, state_one, _ = unified_state_dict(fp8_kv)
    _, state_many, _ = unified_state_dict(sharded)
    assert all(torch.equal(state_one[key], state_many[key]) for key in state_one)


def test_calibration_reuse_from_an_engine_target_run_gives_identical_scales(
    tiny_model_dir: Path, fp8_kv: Path, work: Path
):
    engine = convert_checkpoint(
        tiny_model_dir,
        work / "engine-fp8",
        quant="fp8",
        sha256=False,
        quant_options=QuantOptions(kv_cache_dtype="fp8", **CALIB),
    )
    reused = export(
        tiny_model_dir, work / "reused", "fp8", kv_cache_dtype="fp8", calibration_dir=engine / "calibration"
    )
    assert json.loads((reused / "manifest.json").read_text())["calibration"]["reused_from"] == str(
        engine / "calibration"
    )
    ours, trt = tensors_of(reused), load_file(engine / "rank0.safetensors")
    # the engine target's activation scale of the fused qkv / fc+gate is our shared input_scale
    for trt_name, hf_linear in (
        ("attention.qkv", "self_attn.q_proj"),
        ("mlp.fc", "mlp.gate_proj"),
        ("mlp.proj", "mlp.down_proj"),
    ):
        assert (
            trt[f"transformer.layers.1.{trt_name}.activation_scaling_factor"].item()
            == ours[f"model.layers.1.{hf_linear}.input_scale"].item()
        )
    # same calibration data and settings as the direct run: every tensor identical
    direct = tensors_of(fp8_kv)
    assert all(same_bytes(direct[k], ours[k]) for k in direct)


def test_build_target_pytorch_dry_run_accepts_it(fp8_kv: Path, tmp_path: Path):
    result = CliRunner().invoke(
        main,
        [
            "build",
            "--target",
            "pytorch",
            "--checkpoint",
            str(fp8_kv),
            "--output",
            str(tmp_path / "deploy"),
            "--gpu",
            "h200",
            "--dry-run",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert f"trtllm-serve {fp8_kv}" in result.output and "kv_cache_config" in result.output


def test_cli_target_pytorch_writes_the_unified_checkpoint(tiny_model_dir: Path, awq: Path, tmp_path: Path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        [
            "convert",
            "--model-dir",
            str(tiny_model_dir),
            "--output",
            str(out),
            "--target",
            "pytorch",
            "--quant",
            "int4_awq",
            "--group-size",
            "16",
            "--calibration",
            str(awq / "calibration"),
            "--no-sha256",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert "ModelOpt unified checkpoint (W4A16_AWQ)" in result.output
    assert not list(out.glob("rank*.safetensors")) and (out / "hf_quant_config.json").is_file()
    assert all(
        torch.equal(a, b) for a, b in zip(tensors_of(out).values(), tensors_of(awq).values(), strict=True)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quant", "none"], "loads the Hugging Face directory directly"),
        (["--quant", "none", "--kv-cache-dtype", "fp8"], "--kv-cache-dtype fp8"),
        (["--quant", "int8_wo"], "does not write --quant int8_wo"),
        (["--quant", "fp8", "--tp", "2"], "Drop --tp/--pp here"),
        (["--quant", "int4_awq", "--group-size", "48"], "does not divide the input dimension"),
    ],
)
def test_refusals_say_what_to_do(tiny_model_dir: Path, tmp_path: Path, args, message):
    out = tmp_path / "refused"
    result = CliRunner().invoke(
        main,
        ["convert", "--model-dir", str(tiny_model_dir), "--output", str(out), "--target", "pytorch", *args],
    )
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists()


# ---------------------------------------------------------------- the real LLM API (GPU hosts)


@pytest.mark.gpu
@pytest.mark.parametrize(("quant", "kv"), [("fp8", "fp8"), ("int4_awq", "auto")])
def test_real_llm_api_loads_the_unified_checkpoint(tmp_path: Path, quant: str, kv: str):
    """TensorRT-LLM's PyTorch backend loads `convert --target pytorch` output and generates."""
    from tensorrt_llm import LLM, SamplingParams

    from trt_build.source.tiny_model import write_tiny_model

    model = write_tiny_model(tmp_path / "model", preset="8b-shape", layers=2, seed=0)  # head_dim 128
    checkpoint = export(model, tmp_path / "unified", quant, kv_cache_dtype=kv, device="cuda")
    llm = LLM(model=str(checkpoint), max_batch_size=2, max_seq_len=128)
    try:
        outputs = llm.generate(["東京の"], SamplingParams(max_tokens=8))
        assert len(outputs[0].outputs[0].token_ids) > 0
    finally:
        llm.shutdown()


def test_unsupported_dtype_is_refused(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(SwallowTrtError, match="bfloat16 or float16"):
        export_unified_checkpoint(
            tiny_model_dir, tmp_path / "f32", "fp8", QuantOptions(**CALIB), dtype="float32"
        )
    assert not (tmp_path / "f32").exists()


@pytest.mark.slow
def test_make_engine_target_pytorch_converts_and_builds_the_deployment(tiny_model_dir: Path, tmp_path: Path):
    """`make engine TARGET=pytorch QUANT=fp8` runs convert --target pytorch, then build --target pytorch
    (which compiles nothing, so it runs here; DRY_RUN=1 would run neither: tests/test_build_engine.py)."""
    run = subprocess.run(
        ["make", "-s", "engine", f"MODEL={tiny_model_dir}", "TARGET=pytorch", "QUANT=fp8", "DEVICE=cpu", f"WORK={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    work = tmp_path / f"{tiny_model_dir.name}-fp8-tp1pp1"
    assert checkpoint_kind(work / "checkpoint-pytorch").quant_algo == "FP8"
    assert (work / "deploy" / "llm_api_options.yaml").is_file()
