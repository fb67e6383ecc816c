"""The texts `verify` runs both models on: built-in Japanese and English sentences, the held-out evaluation set
(never used for calibration), or a file of prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import json_lines

# (language, text): short, everyday and technical, so both scripts and number/code tokens appear.
BUILTIN_TEXTS: tuple[tuple[str, str], ...] = (
    ("ja", "東京工業大学と産業技術総合研究所は、日本語に強い大規模言語モデルを共同で開発している。"),
    ("ja", "今日は朝から雨が降っていたので、駅まで歩くのをやめてバスに乗ることにした。"),
    ("ja", "テンソル並列では、各GPUが重み行列の一部だけを持ち、計算結果を通信で集める。"),
    ("ja", "富士山の標高は三千七百七十六メートルで、日本で最も高い山として知られています。"),
    ("en", "The quick brown fox jumps over the lazy dog while the farmer watches from the porch."),
    ("en", "Tensor parallelism splits each weight matrix across GPUs and gathers the partial results."),
    ("en", "In 1969, Apollo 11 landed on the Moon and Neil Armstrong took the first steps outside."),
    ("en", "def add(a: int, b: int) -> int:\n    return a + b  # a tiny Python function"),
)


def read_prompts(path: Path) -> list[tuple[str, str]]:
    """Texts from a file: JSONL ({"text": ...} or {"prompt": ...}, optional "language") or one per line."""
    if path.suffix == ".jsonl":
        rows = [row if isinstance(row, dict) else {} for _, row in json_lines(path)]
        texts = [(row.get("language", "?"), row.get("text") or row.get("prompt") or "") for row in rows]
    else:
        texts = [("?", line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [(language, text) for language, text in texts if text]
    if not texts:
        raise SwallowTrtError(f"{path} holds no prompts.")
    return texts


def tokenizer_for(model_dir: Path) -> Any:
    """The model's own tokenizer, else the offline Llama 3.1 one."""
    from trt_build.source.tokenizer import ensure_tokenizer, load_local_tokenizer

    source = model_dir if (model_dir / "tokenizer.json").is_file() else ensure_tokenizer()
    return load_local_tokenizer(source)


def eval_texts(tokenizer: Any) -> list[tuple[str, list[int]]]:
    """The held-out JA/EN evaluation set (never used for calibration) as (language, token ids)."""
    from trt_build.quant.calib_data import load_eval_samples

    return [
        ("en" if sample.category.startswith("en") else "ja", sample.render(tokenizer))
        for sample in load_eval_samples()
    ]


def tokenize(texts: list[tuple[str, str]], tokenizer: Any) -> list[tuple[str, list[int]]]:
    return [(language, tokenizer(text, add_special_tokens=True)["input_ids"]) for language, text in texts]
