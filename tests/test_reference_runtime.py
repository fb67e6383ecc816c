"""Reference runtime: every TP/PP layout the converter writes loads back to logits identical to the source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trt_build.convert.pipeline import convert_checkpoint
from trt_build.formats.trtllm_checkpoint import LINEAR_FORMATS
from trt_build.formats.trtllm_config import CheckpointError, architecture_from_checkpoint
from trt_build.source.tiny_model import write_tiny_model
from trt_build.verify.compare import load_hf_model
from trt_build.verify.reference_runtime import checkpoint_llama_config, load_checkpoint
from trt_build.verify.trtllm_reader import checkpoint_state_dict

INPUT_IDS = torch.tensor([[128000, 9906, 11, 1917, 0, 220, 15025, 30358, 3574, 31281, 5486, 100, 128009]])


def source_logits(model_dir: Path) -> torch.Tensor:
    _, model = load_hf_model(model_dir)
    with torch.no_grad():
        return model(INPUT_IDS).logits


@pytest.fixture(scope="module")
def tiny_logits(tiny_model_dir: Path) -> torch.Tensor:
    return source_logits(tiny_model_dir)


@pytest.mark.parametrize(
    "options",
    [
        {"tp": 1},
        {"tp": 2},
        {"tp": 4},  # 2 KV heads duplicated x2
        {"tp": 8},  # x4
        {"pp": 2},
        {"tp": 2, "pp": 2},
        {"tp": 8, "use_parallel_embedding": True},
    ],
    ids=lambda options: "-".join(f"{key}{value}" for key, value in options.items()),
)
def test_roundtrip_logits_are_identical(
    tiny_model_dir: Path, tiny_logits: torch.Tensor, tmp_path: Path, options: dict
) -> None:
    checkpoint = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", **options)
    model = load_checkpoint(checkpoint)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(INPUT_IDS).logits
    assert torch.equal(logits, tiny_logits)


@pytest.mark.parametrize(
    ("model_options", "convert_options"),
    [
        ({"layers": 3}, {"pp": 2}),  # uneven: stages hold 2 and 1 layers
        ({"tie_word_embeddings": True}, {"tp": 2}),
        ({"config_form": "v5"}, {"tp": 2, "pp": 2}),
    ],
    ids=["uneven-pp", "tied", "transformers5-config"],
)
def test_roundtrip_other_models(tmp_path: Path, model_options: dict, convert_options: dict) -> None:
    model_dir = write_tiny_model(tmp_path / "model", seed=7, **model_options)
    checkpoint = convert_checkpoint(model_dir, tmp_path / "ckpt", **convert_options)
    with torch.no_grad():
        logits = load_checkpoint(checkpoint)(INPUT_IDS).logits
    assert torch.equal(logits, source_logits(model_dir))


def test_vocab_padding_is_undone(tmp_path: Path) -> None:
    from test_convert import write_small_vocab_model

    model_dir = write_small_vocab_model(tmp_path / "v1001")
    checkpoint = convert_checkpoint(model_dir, tmp_path / "ckpt", tp=4, use_parallel_embedding=True)
    ids = torch.tensor([[1, 5, 999, 1000, 17]])
    _, source = load_hf_model(model_dir)
    model = load_checkpoint(checkpoint)
    assert model.lm_head.weight.shape == (1001, 64)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, source(ids).logits)


def test_state_dict_inverts_the_name_map_exactly(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    checkpoint = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=4, pp=2)
    _, state = checkpoint_state_dict(checkpoint)
    source = load_file(tiny_model_dir / "model.safetensors")
    assert state.keys() == source.keys()
    for name, tensor in source.items():
        assert torch.equal(state[name], tensor), name


def test_float16_checkpoint_loads_in_its_dtype_or_another(tiny_model_dir: Path, tmp_path: Path) -> None:
    checkpoint = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", dtype="float16", tp=2)
    assert load_checkpoint(checkpoint).dtype == torch.float16
    model = load_checkpoint(checkpoint, dtype=torch.float32)
    assert model.dtype == torch.float32
    with torch.no_grad():
        assert torch.isfinite(model(INPUT_IDS).logits).all()


def test_llama_config_from_checkpoint_handles_both_rope_forms(tiny_model_dir: Path, tmp_path: Path) -> None:
    checkpoint = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt")
    config = checkpoint_llama_config(checkpoint)
    assert config.rope_parameters["rope_type"] == "llama3"
    assert config.rope_parameters["rope_theta"] == 500000.0
    assert config.rope_parameters["factor"] == 8.0
    raw = json.loads((checkpoint / "config.json").read_text())
    scaling = raw.pop("rotary_scaling")
    old_form = {
        **raw,
        "rotary_scaling": {**{k: v for k, v in scaling.items() if k != "rope_type"}, "type": "llama3"},
    }
    assert architecture_from_checkpoint(old_form).rope_scaling == scaling
    hf5_form = {
        **{k: v for k, v in raw.items() if k != "rotary_base"},
        "rope_parameters": {**scaling, "rope_theta": 1e6},
    }
    arch = architecture_from_checkpoint(hf5_form)
    assert (arch.rope_theta, arch.rope_scaling) == (1e6, scaling)
    no_scaling = architecture_from_checkpoint({**raw, "rotary_scaling": None})
    assert no_scaling.rope_scaling is None and no_scaling.rope_theta == 500000.0


def test_unknown_quant_algo_and_missing_rank_are_clear_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert None in LINEAR_FORMATS
    checkpoint = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=2)
    config = json.loads((checkpoint / "config.json").read_text())
    config["quantization"]["quant_algo"] = "NOT_A_SCHEME"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="NOT_A_SCHEME"):
        load_checkpoint(checkpoint)
    config["quantization"]["quant_algo"] = None
    (checkpoint / "config.json").write_text(json.dumps(config))
    (checkpoint / "rank1.safetensors").unlink()
    with pytest.raises(CheckpointError, match="rank1.safetensors is missing"):
        load_checkpoint(checkpoint)
