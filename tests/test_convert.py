"""swallow-trt convert: rank-file layout against docs/trtllm-checkpoint.md, config.json, errors, atomic output, manifest."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import HashingStopped, sha256_file
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.convert.trtllm_writer import CopiedRank
from trt_build.formats.safetensors_stream import StreamingSafetensorsWriter
from trt_build.formats.trtllm_config import ALLOWED_MAPPING_KEYS, ALLOWED_QUANTIZATION_KEYS
from trt_build.parallel.rules import check_parallelism, pp_layers
from trt_build.source.hf_config import hf_config_dict
from trt_build.source.tiny_model import PRESETS, hf_tensor_layout, random_tensor, write_tiny_model

D, H, K, HEAD, INTER, VOCAB = 64, 8, 2, 8, 128, 128256  # the tiny preset


def rank_specs(path: Path) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    tensors = load_file(path)
    return {name: (tensor.dtype, tuple(tensor.shape)) for name, tensor in tensors.items()}


def hf_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def layer_specs(index: int, tp: int) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    bf16, kv_rows = torch.bfloat16, max(1, K // tp) * HEAD
    prefix = f"transformer.layers.{index}."
    return {
        prefix + "input_layernorm.weight": (bf16, (D,)),
        prefix + "attention.qkv.weight": (bf16, (H * HEAD // tp + 2 * kv_rows, D)),
        prefix + "attention.dense.weight": (bf16, (D, H * HEAD // tp)),
        prefix + "post_layernorm.weight": (bf16, (D,)),
        prefix + "mlp.fc.weight": (bf16, (INTER // tp, D)),
        prefix + "mlp.gate.weight": (bf16, (INTER // tp, D)),
        prefix + "mlp.proj.weight": (bf16, (D, INTER // tp)),
    }


@pytest.fixture(scope="module")
def tp2(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("ckpt") / "tp2", tp=2)


def test_tp2_rank_files_have_exact_spec_names_shapes_dtypes(tp2: Path) -> None:
    expected = {
        "transformer.vocab_embedding.weight": (torch.bfloat16, (VOCAB, D)),
        "transformer.ln_f.weight": (torch.bfloat16, (D,)),
        "lm_head.weight": (torch.bfloat16, (VOCAB // 2, D)),
        **layer_specs(0, 2),
        **layer_specs(1, 2),
    }
    assert sorted(path.name for path in tp2.iterdir()) == [
        "config.json",
        "manifest.json",
        "rank0.safetensors",
        "rank1.safetensors",
    ]
    for rank in (0, 1):
        assert rank_specs(tp2 / f"rank{rank}.safetensors") == expected


def test_tp2_splits_follow_the_spec(tp2: Path, tiny_model_dir: Path) -> None:
    hf = hf_tensors(tiny_model_dir)
    layer = "model.layers.1."
    for rank in (0, 1):
        got = load_file(tp2 / f"rank{rank}.safetensors")
        q_rows, kv_rows, i_rows = H * HEAD // 2, K * HEAD // 2, INTER // 2
        q = hf[layer + "self_attn.q_proj.weight"][rank * q_rows : (rank + 1) * q_rows]
        k = hf[layer + "self_attn.k_proj.weight"][rank * kv_rows : (rank + 1) * kv_rows]
        v = hf[layer + "self_attn.v_proj.weight"][rank * kv_rows : (rank + 1) * kv_rows]
        rows = slice(rank * i_rows, (rank + 1) * i_rows)
        prefix = "transformer.layers.1."
        assert torch.equal(got[prefix + "attention.qkv.weight"], torch.cat([q, k, v]))
        # HF gate_proj -> mlp.fc (silu side), up_proj -> mlp.gate
        assert torch.equal(got[prefix + "mlp.fc.weight"], hf[layer + "mlp.gate_proj.weight"][rows])
        assert torch.equal(got[prefix + "mlp.gate.weight"], hf[layer + "mlp.up_proj.weight"][rows])
        assert torch.equal(got[prefix + "mlp.proj.weight"], hf[layer + "mlp.down_proj.weight"][:, rows])
        cols = slice(rank * q_rows, (rank + 1) * q_rows)
        assert torch.equal(
            got[prefix + "attention.dense.weight"], hf[layer + "self_attn.o_proj.weight"][:, cols]
        )
        assert torch.equal(got["transformer.vocab_embedding.weight"], hf["model.embed_tokens.weight"])
        vocab_rows = slice(rank * VOCAB // 2, (rank + 1) * VOCAB // 2)
        assert torch.equal(got["lm_head.weight"], hf["lm_head.weight"][vocab_rows])
        assert torch.equal(got["transformer.ln_f.weight"], hf["model.norm.weight"])


def test_config_json_has_spec_values_and_only_allowed_keys(tp2: Path) -> None:
    config = json.loads((tp2 / "config.json").read_text())
    assert set(config["mapping"]) <= ALLOWED_MAPPING_KEYS
    assert set(config["quantization"]) <= ALLOWED_QUANTIZATION_KEYS
    assert config["mapping"] == {"world_size": 2, "tp_size": 2, "pp_size": 1}
    assert config["quantization"]["quant_algo"] is None
    assert config["architecture"] == "LlamaForCausalLM"
    assert (config["dtype"], config["hidden_act"], config["position_embedding_type"]) == (
        "bfloat16",
        "silu",
        "rope_gpt_neox",
    )
    assert (config["num_key_value_heads"], config["head_size"], config["vocab_size"]) == (K, HEAD, VOCAB)
    assert config["rotary_base"] == 500000.0
    assert config["rotary_scaling"]["rope_type"] == "llama3"
    assert config["use_parallel_embedding"] is False


def test_manifest_records_sources_ranks_and_timings(tp2: Path, tiny_model_dir: Path) -> None:
    manifest = json.loads((tp2 / "manifest.json").read_text())
    assert manifest["stage"] == "convert"
    assert manifest["options"]["tp"] == 2 and manifest["tool_version"]
    for rank in manifest["ranks"]:
        path = tp2 / rank["name"]
        assert rank["sha256"] == sha256_file(path)
        assert rank["bytes"] == path.stat().st_size
    sources = {entry["name"]: entry["sha256"] for entry in manifest["source"]["files"]}
    assert sources["model.safetensors"] == sha256_file(tiny_model_dir / "model.safetensors")
    assert "config.json" in sources
    assert manifest["timings"]["convert_seconds"] >= 0
    assert manifest["peak_rss_bytes"] > 0


def test_an_unquantized_convert_never_imports_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Importing torch takes 2-3 s before a first byte could be written: a conversion that changes no value
    moves bytes without it (and still hashes), while a cast to another dtype does import it."""
    code = (
        "import sys; from trt_build.cli import main\n"
        "try: main(sys.argv[1:])\n"
        "except SystemExit as done: print('torch' in sys.modules); assert not done.code, done.code\n"
    )
    for dtype, imported in (("auto", "False"), ("float16", "True")):
        command = [sys.executable, "-c", code, "convert", "--model-dir", str(tiny_model_dir), "--tp", "2"]
        command += ["--output", str(tmp_path / dtype), "--dtype", dtype]
        probe = subprocess.run(command, capture_output=True, text=True, check=True)
        assert probe.stdout.strip().splitlines()[-1] == imported, probe.stderr
        manifest = json.loads((tmp_path / dtype / "manifest.json").read_text())
        assert all(len(rank["sha256"]) == 64 for rank in manifest["ranks"])


@pytest.mark.parametrize(
    "tp, pp, parallel_embedding, vocab",
    [(1, 1, False, None), (2, 2, False, None), (4, 1, True, 1001), (8, 1, False, None)],
)
def test_copied_ranks_are_the_bytes_torch_would_write(
    tiny_model_dir: Path, tmp_path: Path, tp: int, pp: int, parallel_embedding: bool, vocab: int | None
) -> None:
    """The byte-moving ranks and the torch ranks (`RankJob`, what casts and quantizations use) write the same
    files: row and column slices, duplicated KV heads, vocab padding, pipeline stages."""
    from trt_build.convert.options import ConvertJob, ConvertOptions
    from trt_build.convert.streaming import write_files
    from trt_build.convert.trtllm_writer import TrtllmWriter
    from trt_build.source.checkpoint import open_source
    from trt_build.source.hf_config import read_hf_config

    model = write_small_vocab_model(tmp_path / "model", vocab) if vocab else tiny_model_dir
    options = ConvertOptions(
        model, tmp_path / "unused", tp=tp, pp=pp, use_parallel_embedding=parallel_embedding
    )
    arch = read_hf_config(model)
    writer = TrtllmWriter(ConvertJob(options, arch, "bfloat16"))
    source = open_source(model, arch, writer.source_tensors())
    copied = writer.rank_files(source, None)
    made = writer.rank_files(source, None, copy=False)
    assert {type(rank).__name__ for rank in copied} == {"CopiedRank"}
    assert {type(rank).__name__ for rank in made} == {"RankJob"}
    for first, second in zip(copied, made, strict=True):
        paths = [tmp_path / f"{kind}{first.rank}.safetensors" for kind in ("copied", "made")]
        for path, rank in zip(paths, (first, second), strict=True):
            write_files([(path, rank.layout())], iter(rank.tensors()), sha256=False, desc="test")
        assert paths[0].read_bytes() == paths[1].read_bytes()


def test_a_stopped_hash_ends_between_chunks(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 4 * 4096)
    stop = threading.Event()
    assert sha256_file(path, chunk_bytes=4096, stop=stop) == sha256_file(path)
    stop.set()
    with pytest.raises(HashingStopped):
        sha256_file(path, chunk_bytes=4096, stop=stop)


@pytest.mark.parametrize("tp", [4, 8])
def test_kv_heads_are_duplicated_when_tp_exceeds_them(tiny_model_dir: Path, tmp_path: Path, tp: int) -> None:
    out = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=tp)
    hf = hf_tensors(tiny_model_dir)
    config = json.loads((out / "config.json").read_text())
    assert config["num_key_value_heads"] == K  # the original count, not the duplicated one
    for rank in range(tp):
        qkv = load_file(out / f"rank{rank}.safetensors")["transformer.layers.0.attention.qkv.weight"]
        q_rows = H * HEAD // tp
        assert qkv.shape == (q_rows + 2 * HEAD, D)
        head = rank * K // tp  # heads repeated consecutively: h0 h0 .. h1 h1 ..
        k = hf["model.layers.0.self_attn.k_proj.weight"][head * HEAD : (head + 1) * HEAD]
        v = hf["model.layers.0.self_attn.v_proj.weight"][head * HEAD : (head + 1) * HEAD]
        assert torch.equal(qkv[q_rows : q_rows + HEAD], k)
        assert torch.equal(qkv[q_rows + HEAD :], v)


def test_pipeline_stages_hold_local_layers_embedding_first_head_last(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=2, pp=2)
    hf = hf_tensors(tiny_model_dir)
    first, last = rank_specs(out / "rank0.safetensors"), rank_specs(out / "rank3.safetensors")
    assert first == {"transformer.vocab_embedding.weight": (torch.bfloat16, (VOCAB, D)), **layer_specs(0, 2)}
    assert last == {
        **layer_specs(0, 2),
        "transformer.ln_f.weight": (torch.bfloat16, (D,)),
        "lm_head.weight": (torch.bfloat16, (VOCAB // 2, D)),
    }
    stage1 = load_file(out / "rank2.safetensors")  # tp_rank 0 of stage 1 = global layer 1, named 0
    assert torch.equal(
        stage1["transformer.layers.0.input_layernorm.weight"], hf["model.layers.1.input_layernorm.weight"]
    )


def test_uneven_layers_split_like_tensor_split(tmp_path: Path) -> None:
    assert [list(pp_layers(3, 2, s)) for s in range(2)] == [[0, 1], [2]]
    assert [len(pp_layers(10, 4, s)) for s in range(4)] == [3, 3, 2, 2]
    assert [list(pp_layers(L, p, s)) for L, p in ((7, 3),) for s in range(p)] == [
        list(part) for part in torch.arange(7).tensor_split(3)
    ]
    model = write_tiny_model(tmp_path / "three", layers=3)
    out = convert_checkpoint(model, tmp_path / "ckpt", pp=2)
    names = [set(load_file(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert {n.split(".")[2] for n in names[0] if n.startswith("transformer.layers.")} == {"0", "1"}
    assert {n.split(".")[2] for n in names[1] if n.startswith("transformer.layers.")} == {"0"}
    assert "lm_head.weight" in names[1] and "lm_head.weight" not in names[0]


def write_small_vocab_model(path: Path, vocab: int = 1001, tied: bool = False) -> Path:
    """A tiny model whose vocab is not divisible by the TP degree (write_tiny_model uses 128256)."""
    arch = dataclasses.replace(PRESETS["tiny"], vocab_size=vocab, tie_word_embeddings=tied)
    path.mkdir(parents=True)
    tensors = {
        name: random_tensor(name, dt, shape, 3) for name, dt, shape in hf_tensor_layout(arch, torch.bfloat16)
    }
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(hf_config_dict(arch)))
    return path


def test_lm_head_is_padded_when_vocab_is_not_divisible(tmp_path: Path) -> None:
    model = write_small_vocab_model(tmp_path / "v1001")
    out = convert_checkpoint(model, tmp_path / "ckpt", tp=2, use_parallel_embedding=True)
    hf = hf_tensors(model)
    ranks = [load_file(out / f"rank{r}.safetensors") for r in (0, 1)]
    assert [r["lm_head.weight"].shape for r in ranks] == [(501, D), (501, D)]
    assert torch.equal(ranks[1]["lm_head.weight"][-1], torch.zeros(D, dtype=torch.bfloat16))
    merged = torch.cat([r["lm_head.weight"] for r in ranks])[:1001]
    assert torch.equal(merged, hf["lm_head.weight"])
    assert [r["transformer.vocab_embedding.weight"].shape for r in ranks] == [(501, D), (501, D)]
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 1001 and config["use_parallel_embedding"] is True


def test_tied_embeddings_write_lm_head_from_the_embedding(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tied", tie_word_embeddings=True)
    assert "lm_head.weight" not in hf_tensors(model)
    out = convert_checkpoint(model, tmp_path / "ckpt", tp=2)
    embedding = hf_tensors(model)["model.embed_tokens.weight"]
    heads = [load_file(out / f"rank{r}.safetensors")["lm_head.weight"] for r in (0, 1)]
    assert torch.equal(torch.cat(heads), embedding)


def test_transformers5_config_converts_with_llama3_rope(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "v5", config_form="v5")
    raw = json.loads((model / "config.json").read_text())
    assert "rope_theta" not in raw and raw["rope_parameters"]["rope_theta"] == 500000.0
    config = json.loads((convert_checkpoint(model, tmp_path / "ckpt") / "config.json").read_text())
    assert config["rotary_base"] == 500000.0
    assert config["rotary_scaling"] == {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    }


def test_float16_and_workers_give_the_same_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    one = convert_checkpoint(tiny_model_dir, tmp_path / "w1", dtype="float16", tp=2, pp=2, workers=1)
    four = convert_checkpoint(tiny_model_dir, tmp_path / "w4", dtype="float16", tp=2, pp=2, workers=4)
    for rank in range(4):
        assert sha256_file(one / f"rank{rank}.safetensors") == sha256_file(four / f"rank{rank}.safetensors")
    assert json.loads((one / "config.json").read_text())["dtype"] == "float16"
    assert {dtype for dtype, _ in rank_specs(one / "rank0.safetensors").values()} == {torch.float16}
    with safe_open(one / "rank3.safetensors", framework="pt") as handle:
        assert handle.metadata()["format"] == "pt"


# --- bad input ------------------------------------------------------------------------------------


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_config(model: Path, **changes: object) -> None:
    config = json.loads((model / "config.json").read_text())
    config.update(changes)
    (model / "config.json").write_text(json.dumps(config))


def run_cli(*args: str) -> tuple[int, str]:
    from trt_build.cli import main

    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_cli_converts_and_refuses_existing_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    code, output = run_cli("convert", "--model-dir", str(tiny_model_dir), "--output", str(out), "--tp", "2")
    assert code == 0, output
    assert "2 rank file(s)" in output
    stamp = (out / "manifest.json").read_text()
    code, output = run_cli("convert", "--model-dir", str(tiny_model_dir), "--output", str(out))
    assert code == 1 and "already exists" in output and "--overwrite" in output
    assert (out / "manifest.json").read_text() == stamp
    code, output = run_cli("convert", "--model-dir", str(tiny_model_dir), "--output", str(out), "--overwrite")
    assert code == 0, output
    assert json.loads((out / "config.json").read_text())["mapping"]["tp_size"] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tp": 3}, "--tp 3 does not split 8 attention heads"),
        ({"pp": 3}, "--pp 3 is larger than the number of layers (2)"),
    ],
)
def test_bad_parallelism_is_refused(
    tiny_model_dir: Path, tmp_path: Path, options: dict, message: str
) -> None:
    with pytest.raises(SwallowTrtError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", **options)
    assert not (tmp_path / "ckpt").exists()


def test_tp_incompatible_with_kv_heads_is_refused() -> None:
    arch = dataclasses.replace(PRESETS["tiny"], num_attention_heads=12, num_key_value_heads=3)
    with pytest.raises(SwallowTrtError, match="3 KV heads"):
        check_parallelism(arch, 2, 1)
    arch = dataclasses.replace(
        PRESETS["tiny"], num_attention_heads=12, num_key_value_heads=6, intermediate_size=192
    )
    with pytest.raises(SwallowTrtError, match="6 KV heads"):
        check_parallelism(arch, 4, 1)
    check_parallelism(arch, 12, 1)  # 12 % 6 == 0: duplication is fine


def test_non_llama_architecture_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "gpt2")
    edit_config(model, architectures=["GPT2LMHeadModel"])
    with pytest.raises(SwallowTrtError, match="GPT2LMHeadModel.*not supported"):
        convert_checkpoint(model, tmp_path / "ckpt")


def test_missing_tensor_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "missing")
    tensors = hf_tensors(model)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, model / "model.safetensors")
    with pytest.raises(SwallowTrtError, match=r"missing .*model\.layers\.1\.mlp\.up_proj\.weight"):
        convert_checkpoint(model, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_shape_contradicting_config_names_tensor_and_shapes(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "bad-shape")
    edit_config(model, intermediate_size=256)
    with pytest.raises(SwallowTrtError) as error:
        convert_checkpoint(model, tmp_path / "ckpt")
    assert "model.layers.0.mlp.gate_proj.weight" in error.value.message
    assert "[128, 64]" in error.value.message and "[256, 64]" in error.value.message


def test_pickle_only_checkpoint_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "pickle"
    model.mkdir()
    shutil.copy(tiny_model_dir / "config.json", model / "config.json")
    (model / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(SwallowTrtError, match="pickle.*execute arbitrary code.*safetensors"):
        convert_checkpoint(model, tmp_path / "ckpt")


def test_sharded_checkpoint_with_index_converts(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "sharded", max_shard_bytes=8 << 20)
    assert (model / "model.safetensors.index.json").is_file()
    out = convert_checkpoint(model, tmp_path / "ckpt", tp=2)
    assert rank_specs(out / "rank1.safetensors")["lm_head.weight"] == (torch.bfloat16, (VOCAB // 2, D))
    shards = sorted(model.glob("model-*.safetensors"))
    assert len(shards) >= 2
    shards[-1].unlink()
    with pytest.raises(SwallowTrtError, match="download is incomplete"):
        convert_checkpoint(model, tmp_path / "ckpt2")


# --- values the checkpoint dtype cannot hold ---------------------------------------------------------


def edit_tensor(model: Path, name: str, row: int, col: int, value: float) -> float:
    """Set one element of a tiny model's tensor; returns the value as stored (bf16-rounded)."""
    tensors = load_file(model / "model.safetensors")
    tensors[name][row, col] = value
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    return tensors[name][row, col].float().item()


@pytest.mark.parametrize(
    ("name", "row", "trt_name"),
    [  # column 3 of both lies on rank 0: the linear is split by input columns, the embedding replicated
        ("model.layers.1.mlp.down_proj.weight", 5, "transformer.layers.1.mlp.proj.weight"),
        ("model.embed_tokens.weight", VOCAB - 1, "transformer.vocab_embedding.weight"),  # last row block
    ],
)
def test_float16_overflow_is_refused_and_leaves_nothing(
    tmp_path: Path, name: str, row: int, trt_name: str
) -> None:
    model = write_tiny_model(tmp_path / "model", seed=1)
    stored = edit_tensor(model, name, row, 3, -70000.0)
    assert abs(stored) > torch.finfo(torch.float16).max  # bf16 holds it, fp16 would make it -inf
    with pytest.raises(SwallowTrtError) as error:
        convert_checkpoint(model, tmp_path / "ckpt", dtype="float16", tp=2, workers=2)
    message = error.value.message
    assert name in message and f"max |value| {abs(stored):.6g}" in message
    assert "float16" in message and "--dtype bfloat16" in message
    assert leftovers(tmp_path) == []
    # the model's own dtype holds the value: converted as is, not refused
    out = convert_checkpoint(model, tmp_path / "ckpt", dtype="auto", tp=2)
    assert load_file(out / "rank0.safetensors")[trt_name][row, 3].item() == stored


def test_source_with_nan_or_inf_is_refused_when_cast(tmp_path: Path) -> None:
    """The same scan finds a damaged source: it is told apart from an overflow."""
    model = write_tiny_model(tmp_path / "model", seed=1)
    edit_tensor(model, "model.layers.0.self_attn.k_proj.weight", 2, 2, float("nan"))
    edit_tensor(model, "model.layers.0.self_attn.k_proj.weight", 3, 1, float("inf"))
    with pytest.raises(SwallowTrtError, match=r"already holds inf/NaN values \(2 of the ") as error:
        convert_checkpoint(model, tmp_path / "ckpt", dtype="float16", tp=2)
    assert "model.layers.0.self_attn.k_proj.weight in model.safetensors" in error.value.message
    assert "download it again" in error.value.message
    assert leftovers(tmp_path) == []


# --- interrupted writes ------------------------------------------------------------------------------


def leftovers(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir() if path.name.startswith((".ckpt", "ckpt")))


@pytest.mark.parametrize("workers", [1, 3])
def test_interrupt_mid_write_leaves_nothing(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    calls = []
    original = StreamingSafetensorsWriter.write

    def interrupted(self: StreamingSafetensorsWriter, name: str, tensor: torch.Tensor) -> None:
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        original(self, name, tensor)

    monkeypatch.setattr(StreamingSafetensorsWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=2, pp=2, workers=workers)
    assert leftovers(tmp_path) == []


def test_sigterm_mid_write_leaves_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from trt_build.formats.safetensors_stream import StreamingSafetensorsWriter\n"
        "from trt_build.cli import main\n"
        "write = StreamingSafetensorsWriter.write\n"
        "def slow(self, name, tensor):\n"
        "    time.sleep(0.3)\n"
        "    write(self, name, tensor)\n"
        "StreamingSafetensorsWriter.write = slow\n"
        "main(sys.argv[1:])\n"
    )
    command = [sys.executable, "-c", script, "convert", "--model-dir", str(tiny_model_dir)]
    process = subprocess.Popen(
        [*command, "--output", str(tmp_path / "ckpt"), "--tp", "2"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".ckpt.partial-*/rank0.safetensors")):
        assert time.monotonic() < deadline and process.poll() is None, "convert never started writing"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "terminated by signal 15: the partial output was removed" in stderr
    assert leftovers(tmp_path) == []


def test_a_failing_rank_cancels_the_others(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors = CopiedRank.tensors

    def broken(job: CopiedRank):
        for index, item in enumerate(tensors(job)):
            if job.rank == 1 and index == 3:  # rank 1 fails at its first linear
                raise RuntimeError("disk on fire")
            yield item

    monkeypatch.setattr(CopiedRank, "tensors", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=2, quant="none", workers=2)
    assert leftovers(tmp_path) == []


def test_known_source_digests_are_reused(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A fetch manifest's hub sha256 (same size) or an HF cache blob name saves hashing 140 GB again."""
    blobs = tmp_path / "hub" / "blobs"
    blobs.mkdir(parents=True)
    digest = sha256_file(tiny_model_dir / "model.safetensors")
    shutil.copy(tiny_model_dir / "model.safetensors", blobs / digest)
    model = tmp_path / "hub" / "snapshot"
    model.mkdir()
    (model / "model.safetensors").symlink_to(blobs / digest)
    shutil.copy(tiny_model_dir / "config.json", model / "config.json")
    fetched = {"stage": "fetch", "files": [{"name": "config.json", "bytes": 1, "sha256": "0" * 64}]}
    (model / "manifest.json").write_text(json.dumps(fetched))  # wrong size: must be recomputed
    out = convert_checkpoint(model, tmp_path / "ckpt")
    sources = {f["name"]: f for f in json.loads((out / "manifest.json").read_text())["source"]["files"]}
    assert sources["model.safetensors"]["sha256"] == digest
    assert sources["model.safetensors"]["sha256_from"] == "hf cache blob name"
    assert sources["config.json"]["sha256_from"] == "computed"
    assert sources["config.json"]["sha256"] == sha256_file(model / "config.json")
    size = (model / "config.json").stat().st_size
    fetched["files"][0]["bytes"] = size
    (model / "manifest.json").write_text(json.dumps(fetched))
    out = convert_checkpoint(model, tmp_path / "ckpt", overwrite=True)
    sources = {f["name"]: f for f in json.loads((out / "manifest.json").read_text())["source"]["files"]}
    assert sources["config.json"] == {
        "name": "config.json",
        "bytes": size,
        "sha256": "0" * 64,
        "sha256_from": "fetch manifest",
    }


def test_no_sha256_skips_hashing_but_not_sizes(tiny_model_dir: Path, tmp_path: Path, tp2: Path) -> None:
    out = convert_checkpoint(tiny_model_dir, tmp_path / "ckpt", tp=2, sha256=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [rank["sha256"] for rank in manifest["ranks"]] == [None, None]
    assert [rank["bytes"] for rank in manifest["ranks"]] == [
        (out / f"rank{r}.safetensors").stat().st_size for r in (0, 1)
    ]
    assert {entry["sha256_from"] for entry in manifest["source"]["files"]} == {"not computed (--no-sha256)"}
    for rank in (0, 1):  # hashing changes nothing in the files themselves
        assert sha256_file(out / f"rank{rank}.safetensors") == sha256_file(tp2 / f"rank{rank}.safetensors")
