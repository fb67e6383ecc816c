"""The peer: NVIDIA ModelOpt 0.47.0 itself, in its own venv (`make modelopt-peer`), exports the same tiny model;
`convert --target pytorch` must write the same checkpoint. Its own file so that building the peer venv
(minutes on a fresh clone) runs beside the rest of the suite (conftest puts `peer` tests first)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.test_hf_export import LINEARS, ROOT, export, tensors_of
from trt_build.quant import numerics as qf
from trt_build.quant.calibration_result import FUSED_GROUPS
from trt_build.source.hf_config import hf_config_dict, read_hf_config
from trt_build.source.tiny_model import GENERATION_CONFIG, PRESETS, hf_tensor_layout, random_tensor
from trt_build.source.tokenizer import copy_tokenizer
from trt_build.verify.reference_runtime import load_unified_checkpoint

# ModelOpt's INT4_AWQ_CFG uses block size 128 along the input: every linear's input must be a multiple of it.
PEER_ARCH = dataclasses.replace(
    PRESETS["tiny"],
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
)
PEER_VENV = ROOT / ".venv-modelopt"


def write_peer_model(output: Path) -> Path:
    """The tiny model with ModelOpt-AWQ-compatible widths, config in the transformers-4 form (4.57 peer)."""
    output.mkdir(parents=True)
    layout = hf_tensor_layout(PEER_ARCH, torch.bfloat16)
    save_file(
        {n: random_tensor(n, dt, s, 0) for n, dt, s in layout}, output / "model.safetensors", {"format": "pt"}
    )
    (output / "config.json").write_text(json.dumps(hf_config_dict(PEER_ARCH, "v4"), indent=2))
    (output / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    copy_tokenizer(output)
    return output


@pytest.fixture(scope="module")
def peer_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """mode -> (source model, ModelOpt export, our export). Builds the peer venv first (idempotent)."""
    built = subprocess.run(["make", "-s", "modelopt-peer"], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, (
        f"make modelopt-peer failed (the peer test cannot run):\n{built.stderr[-3000:]}"
    )
    root = tmp_path_factory.mktemp("peer")
    model = write_peer_model(root / "model")
    modes = {"fp8_kv": ("fp8", "fp8"), "int4_awq": ("int4_awq", "auto")}  # mode -> our quant, KV cache
    exports = [f"{root / f'modelopt-{mode}'}:{mode}" for mode in modes]
    run = subprocess.run(
        [str(PEER_VENV / "bin" / "python"), str(ROOT / "tests" / "peer" / "modelopt_export.py"), str(model), *exports],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    pairs = {}
    for mode, (quant, kv) in modes.items():
        ours = export(model, root / f"ours-{mode}", quant, kv_cache_dtype=kv, calib_seq_len=64)
        pairs[mode] = (model, root / f"modelopt-{mode}", ours)
    return pairs


def e4m3_code_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many representable e4m3 values apart two FP8 tensors are (bit patterns are ordered by magnitude)."""

    def ordinal(t: torch.Tensor) -> torch.Tensor:
        bits = t.view(torch.uint8).to(torch.int16)
        magnitude = bits & 0x7F
        return torch.where(bits & 0x80 != 0, -magnitude, magnitude)

    return (ordinal(a) - ordinal(b)).abs()


@pytest.mark.slow
@pytest.mark.peer
@pytest.mark.parametrize("mode", ["fp8_kv", "int4_awq"])
def test_same_checkpoint_as_modelopt_export_hf_checkpoint(peer_pairs, mode):
    model, peer, ours = peer_pairs[mode]
    theirs, mine, src = tensors_of(peer), tensors_of(ours), tensors_of(model)
    # names, dtypes, shapes: identical
    assert {k: (v.dtype, tuple(v.shape)) for k, v in theirs.items()} == {
        k: (v.dtype, tuple(v.shape)) for k, v in mine.items()
    }
    # both config files: identical quantization blocks
    assert json.loads((peer / "hf_quant_config.json").read_text()) == json.loads(
        (ours / "hf_quant_config.json").read_text()
    )
    peer_config, our_config = (json.loads((d / "config.json").read_text()) for d in (peer, ours))
    assert peer_config["quantization_config"] == our_config["quantization_config"]
    # transformers 4.57 also saves rope_theta inside rope_scaling (ModelOpt's config.json); same model otherwise
    peer_arch = read_hf_config(peer)
    peer_scaling = {k: v for k, v in (peer_arch.rope_scaling or {}).items() if k != "rope_theta"}
    assert dataclasses.replace(peer_arch, rope_scaling=peer_scaling) == read_hf_config(ours)
    for layer in range(PEER_ARCH.num_hidden_layers):
        for checkpoint in (theirs, mine):  # the same scales are shared, in both
            p = f"model.layers.{layer}"
            if mode == "fp8_kv":
                for group in ("qkv", "gate_up"):
                    assert len({checkpoint[f"{p}.{m}.input_scale"].item() for m in FUSED_GROUPS[group]}) == 1
                assert len({checkpoint[f"{p}.{m}.weight_scale"].item() for m in FUSED_GROUPS["qkv"]}) == 3
        for linear in LINEARS:
            prefix = f"model.layers.{layer}.{linear}"
            if mode == "fp8_kv":
                # weight scales depend only on the weights: equal; FP8 codes at most one step apart (ModelOpt
                # divides in bf16 and rounds twice, we round once from float32)
                assert theirs[f"{prefix}.weight_scale"].item() == mine[f"{prefix}.weight_scale"].item()
                distance = e4m3_code_distance(theirs[f"{prefix}.weight"], mine[f"{prefix}.weight"])
                assert distance.max() <= 1 and distance.float().mean() < 0.1
                for scale in ("input_scale",):  # calibration-dependent: positive, finite, same shape
                    for checkpoint in (theirs, mine):
                        assert (
                            torch.isfinite(checkpoint[f"{prefix}.{scale}"])
                            and checkpoint[f"{prefix}.{scale}"] > 0
                        )
            else:
                # AWQ scales depend on the calibration data: compare the effective weights with the source
                for checkpoint in (theirs, mine):
                    q = qf.unpack_int4_rows(checkpoint[f"{prefix}.weight"])
                    deq = qf.int4_group_dequantize(q, checkpoint[f"{prefix}.weight_scale"], 128)
                    if f"{prefix}.pre_quant_scale" in checkpoint:
                        deq = deq * checkpoint[f"{prefix}.pre_quant_scale"].float()
                    else:
                        norm = "input_layernorm" if "self_attn" in linear else "post_attention_layernorm"
                        key = f"model.layers.{layer}.{norm}.weight"
                        deq = deq * (checkpoint[key].float() / src[key].float())
                    weight = src[f"{prefix}.weight"].float()
                    assert (deq - weight).norm() / weight.norm() < 0.15  # int4, one group per row
        if mode == "fp8_kv":
            for name in ("self_attn.k_proj.k_scale", "self_attn.v_proj.v_scale"):
                for checkpoint in (theirs, mine):
                    value = checkpoint[f"model.layers.{layer}.{name}"]
                    assert torch.isfinite(value) and 0 < value < 1
    for key in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert torch.equal(theirs[key], mine[key])


@pytest.mark.slow
@pytest.mark.peer
def test_our_reference_runtime_reads_modelopts_export_like_ours(peer_pairs):
    """ModelOpt's own checkpoints load through load_unified_checkpoint and track the source like ours."""
    model, peer, ours = peer_pairs["int4_awq"]
    ids = torch.randint(0, PEER_ARCH.vocab_size, (1, 24), generator=torch.Generator().manual_seed(1))
    from trt_build.verify.compare import load_hf_model

    _, source_model = load_hf_model(model)
    with torch.inference_mode():
        reference = source_model(ids).logits.float()
        cosines = [
            torch.nn.functional.cosine_similarity(
                load_unified_checkpoint(d, dtype=torch.float32)(ids).logits, reference, dim=-1
            )
            .mean()
            .item()
            for d in (peer, ours)
        ]
    assert min(cosines) > 0.95 and abs(cosines[0] - cosines[1]) < 0.02, cosines
