"""swallow-trt verify: passes a faithful checkpoint, fails an altered one, exit codes and JSON report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from trt_build.cli import main
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.verify.texts import BUILTIN_TEXTS, read_prompts
from trt_build.verify.thresholds import THRESHOLDS, precision_key


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("verify") / "tp2", tp=2)


def verify(model_dir: Path, checkpoint_dir: Path, *extra: str):
    args = ["verify", "--model-dir", str(model_dir), "--checkpoint", str(checkpoint_dir), *extra]
    return CliRunner().invoke(main, args)


def altered_copy(checkpoint_dir: Path, target: Path, change) -> Path:
    shutil.copytree(checkpoint_dir, target)
    tensors = load_file(target / "rank0.safetensors")
    change(tensors)
    save_file(tensors, target / "rank0.safetensors")
    return target


def test_builtin_texts_cover_japanese_and_english() -> None:
    languages = [language for language, _ in BUILTIN_TEXTS]
    assert languages.count("ja") >= 3 and languages.count("en") >= 3
    assert any("\u3040" <= ch <= "\u30ff" for _, text in BUILTIN_TEXTS for ch in text)  # kana present


def test_good_checkpoint_passes_with_identical_logits(tiny_model_dir: Path, checkpoint: Path) -> None:
    result = verify(tiny_model_dir, checkpoint, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True and report["precision"] == "exact"
    assert report["max_abs_logit_diff"] == 0.0 and report["top1_agreement"] == 1.0
    assert report["ppl_source"] == report["ppl_checkpoint"] > 1
    assert len(report["texts"]) == len(BUILTIN_TEXTS)


def test_one_altered_tensor_fails(tiny_model_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    def nudge(tensors: dict[str, torch.Tensor]) -> None:
        name = "transformer.layers.1.mlp.proj.weight"
        tensors[name] = tensors[name] * 1.01

    result = verify(tiny_model_dir, altered_copy(checkpoint, tmp_path / "bad", nudge))
    assert result.exit_code == 1
    assert "FAILED" in result.output and "max |logit diff|" in result.output


def test_swapped_fc_and_gate_fail(tiny_model_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    """The classic converter mistake (HF gate_proj written as mlp.gate) must not pass."""

    def swap(tensors: dict[str, torch.Tensor]) -> None:
        for layer in (0, 1):
            fc, gate = (
                f"transformer.layers.{layer}.mlp.fc.weight",
                f"transformer.layers.{layer}.mlp.gate.weight",
            )
            tensors[fc], tensors[gate] = tensors[gate], tensors[fc]

    result = verify(tiny_model_dir, altered_copy(checkpoint, tmp_path / "swapped", swap))
    assert result.exit_code == 1 and "FAILED" in result.output


def test_float16_checkpoint_passes_its_thresholds(tiny_model_dir: Path, tmp_path: Path) -> None:
    fp16 = convert_checkpoint(tiny_model_dir, tmp_path / "fp16", dtype="float16")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"text": t, "language": lang}) for lang, t in BUILTIN_TEXTS[:2]),
        encoding="utf-8",
    )
    result = verify(tiny_model_dir, fp16, "--json", "--prompts", str(prompts))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["precision"] == "float16" and len(report["texts"]) == 2
    assert 0 < report["max_abs_logit_diff"] <= THRESHOLDS["float16"].max_abs_logit_diff
    assert report["top1_agreement"] >= THRESHOLDS["float16"].min_top1_agreement


def test_checkpoint_of_another_model_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    from trt_build.source.tiny_model import write_tiny_model

    other = write_tiny_model(tmp_path / "three-layers", layers=3)
    result = verify(other, checkpoint)
    assert result.exit_code == 1 and "not made from this model" in result.output


def test_precision_key_and_prompt_files(tmp_path: Path) -> None:
    assert precision_key({"dtype": "bfloat16", "quantization": {"quant_algo": None}}, "bfloat16") == "exact"
    assert precision_key({"dtype": "float16", "quantization": {}}, "bfloat16") == "float16"
    assert precision_key({"dtype": "bfloat16", "quantization": {"quant_algo": "FP8"}}, "bfloat16") == "FP8"
    plain = tmp_path / "prompts.txt"
    plain.write_text("こんにちは\n\nhello\n", encoding="utf-8")
    assert read_prompts(plain) == [("?", "こんにちは"), ("?", "hello")]


def test_a_damaged_rank_file_is_named_not_a_traceback(
    tiny_model_dir: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """A truncated rank file (a killed copy) is refused by verify naming the file."""
    damaged = tmp_path / "damaged"
    shutil.copytree(checkpoint, damaged)
    rank = damaged / "rank1.safetensors"
    rank.write_bytes(rank.read_bytes()[:4096])
    result = verify(tiny_model_dir, damaged)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert f"{rank} is not a valid safetensors file" in result.output, result.output
    assert "Traceback" not in result.output
