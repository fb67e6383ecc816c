import json

import pytest
import torch
from safetensors import safe_open

from trt_build.common.errors import SwallowTrtError
from trt_build.source.hf_config import read_hf_config
from trt_build.source.tiny_model import PRESETS, hf_tensor_layout, write_tiny_model


def test_tiny_model_loads_in_transformers_and_generates(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.rope_parameters["rope_type"] == "llama3"
    assert model.config.rope_parameters["rope_theta"] == 500000.0
    assert model.dtype == torch.bfloat16
    ids = tokenizer("東京の紅葉した公園で", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 8)
    assert out[0, : ids.shape[1]].tolist() == ids[0].tolist()
    assert all(0 <= token < 128256 for token in out[0].tolist())


def test_tiny_model_directory_looks_like_a_swallow_repo(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["torch_dtype"] == config["dtype"] == "bfloat16"
    assert config["rope_scaling"]["rope_type"] == "llama3" and config["rope_theta"] == 500000.0
    assert config["tie_word_embeddings"] is False and config["eos_token_id"] == [128001, 128008, 128009]
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert 128009 in generation["eos_token_id"]
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors", "manifest.json"):
        assert (tiny_model_dir / name).is_file()
    arch = read_hf_config(tiny_model_dir)
    with safe_open(tiny_model_dir / "model.safetensors", "pt") as handle:
        names = set(handle.keys())
        assert handle.get_tensor("lm_head.weight").shape == (128256, 64)
    assert names == {name for name, _, _ in hf_tensor_layout(arch, torch.bfloat16)}


def test_large_models_are_sharded_with_an_index(tmp_path):
    out = write_tiny_model(tmp_path / "m", layers=3, max_shard_bytes=4 << 20)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(path.name for path in out.glob("model-*.safetensors"))
    assert len(shards) > 1 and set(index["weight_map"].values()) == set(shards)
    total = 0
    for shard in shards:
        with safe_open(out / shard, "pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                assert index["weight_map"][name] == shard
                tensor = handle.get_tensor(name)
                total += tensor.numel() * tensor.element_size()
    assert total == index["metadata"]["total_size"]


def test_weights_depend_only_on_seed(tmp_path):
    first = write_tiny_model(tmp_path / "a", seed=3, layers=1)
    again = write_tiny_model(tmp_path / "b", seed=3, layers=1)
    other = write_tiny_model(tmp_path / "c", seed=4, layers=1)
    read = {}
    for path in (first, again, other):
        with safe_open(path / "model.safetensors", "pt") as handle:
            read[path.name] = handle.get_tensor("model.layers.0.mlp.up_proj.weight")
    assert torch.equal(read["a"], read["b"])
    assert not torch.equal(read["a"], read["c"])
    assert 0.015 < read["a"].float().std().item() < 0.025


def test_tied_embeddings_have_no_lm_head(tmp_path):
    out = write_tiny_model(tmp_path / "tied", layers=1, tie_word_embeddings=True)
    with safe_open(out / "model.safetensors", "pt") as handle:
        assert "lm_head.weight" not in handle.keys()  # noqa: SIM118
    assert read_hf_config(out).tie_word_embeddings


def test_existing_output_is_refused_without_overwrite(tmp_path):
    out = write_tiny_model(tmp_path / "m", layers=1)
    with pytest.raises(SwallowTrtError, match="--overwrite"):  # common/outdir.py
        write_tiny_model(out, layers=1)
    write_tiny_model(out, layers=2, overwrite=True)
    assert read_hf_config(out).num_hidden_layers == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no partial or old directories left


def test_8b_shape_has_real_layer_dimensions():
    arch = PRESETS["8b-shape"]
    layout = dict((name, shape) for name, _, shape in hf_tensor_layout(arch, torch.bfloat16))
    assert layout["model.layers.0.self_attn.k_proj.weight"] == (1024, 4096)
    assert layout["model.layers.1.mlp.down_proj.weight"] == (4096, 14336)
