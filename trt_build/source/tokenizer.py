"""The Llama 3.1 tokenizer (used unchanged by Llama-3.1-Swallow), built offline.

The Hugging Face hub is not always reachable, but Meta's tiktoken BPE file ships in the
`llama-models` wheel on PyPI. We convert it to a Hugging Face fast tokenizer with the Llama 3.1
special tokens, a BOS post-processor and a Llama-3-style chat template of our own, and cache it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from trt_build.common.errors import SwallowTrtError
from trt_build.common.outdir import atomic_output_dir
from trt_build.source.tokenizer_loading import load_local_tokenizer

LLAMA_MODELS_WHEEL = "llama-models==0.3.0"
TOKENIZER_MODEL_MEMBER = "llama_models/llama3/tokenizer.model"
TOKENIZER_MODEL_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
TOKENIZER_NAME = "llama-3.1-swallow"

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|eot_id|>"  # what Instruct models end a turn with
BOS_ID, END_OF_TEXT_ID, EOM_ID, EOT_ID = 128000, 128001, 128008, 128009
VOCAB_SIZE = 128256

# Ids 128000..128255 in order. Ids 128005 and 128011 carry the reserved names the HF Llama 3.1 repos use.
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
] + [f"<|reserved_special_token_{i}|>" for i in range(3, 248)]

# Llama-3-style chat template (ours). The BOS comes from the template, so callers that render it must
# tokenize with add_special_tokens=False to avoid a double BOS.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

FAST_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # what a fast tokenizer loads from
# A model's tokenizer in every form a repository may carry it (data only, never code): copied beside converted
# weights and into Triton repositories, fetched from the hub.
TOKENIZER_FILES = (*FAST_TOKENIZER_FILES, "special_tokens_map.json", "tokenizer.model", "chat_template.jinja")
GENERATION_CONFIG = "generation_config.json"  # generation defaults (the end ids), copied with the tokenizer
BUILT_FILES = (*FAST_TOKENIZER_FILES, "special_tokens_map.json")  # what `ensure_tokenizer` writes


def cache_dir() -> Path:
    """Where built artefacts (tokenizer, Meta's BPE file) are kept between runs."""
    root = os.environ.get("SWALLOW_TRT_CACHE") or Path.home() / ".cache" / "swallow-trt"
    return Path(root)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tokenizer_model_file() -> Path:
    """Meta's Llama 3 `tokenizer.model`, checked by sha256; downloaded from PyPI once if needed."""
    target = cache_dir() / "llama3-tokenizer.model"
    if target.exists() and _sha256(target) == TOKENIZER_MODEL_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            tmp,
            LLAMA_MODELS_WHEEL,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("llama_models-*.whl"))
        if result.returncode != 0 or not wheels:
            raise SwallowTrtError(
                f"Could not download {LLAMA_MODELS_WHEEL} from the package index to get the Llama 3 "
                f"tokenizer.model:\n{result.stderr.strip()}\n",
                f"Put the file (sha256 {TOKENIZER_MODEL_SHA256}) at {target} and run again.",
            )
        extracted = Path(tmp) / "tokenizer.model"
        with zipfile.ZipFile(wheels[0]) as wheel:
            extracted.write_bytes(wheel.read(TOKENIZER_MODEL_MEMBER))
        if _sha256(extracted) != TOKENIZER_MODEL_SHA256:
            raise SwallowTrtError(
                f"{LLAMA_MODELS_WHEEL} holds an unexpected tokenizer.model (sha256 differs)."
            )
        os.replace(extracted, target)
    return target


def build_tokenizer(output: Path) -> Path:
    """Write the Llama 3.1 tokenizer as a Hugging Face tokenizer directory at `output`."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(
        vocab_file=str(tokenizer_model_file()), extra_special_tokens=SPECIAL_TOKENS
    ).converted()
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN}:0 $A:0",
                pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
                special_tokens=[(BOS_TOKEN, BOS_ID)],
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    with atomic_output_dir(output, overwrite=True) as tmp:
        tokenizer.save_pretrained(tmp)
        config_path = tmp / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        # transformers 5 writes "TokenizersBackend", which transformers 4 cannot load.
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config["chat_template"] = CHAT_TEMPLATE  # in tokenizer_config.json, where both versions read it
        config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n")
        (tmp / "chat_template.jinja").unlink(missing_ok=True)
        special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN}
        (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return output


def ensure_tokenizer() -> Path:
    """The cached tokenizer directory, built on first use."""
    directory = cache_dir() / "tokenizer" / TOKENIZER_NAME
    if all((directory / name).exists() for name in BUILT_FILES):
        return directory
    return build_tokenizer(directory)


def copy_tokenizer(destination: Path) -> None:
    """Copy the cached tokenizer files into a model directory."""
    source = ensure_tokenizer()
    for name in BUILT_FILES:
        shutil.copy2(source / name, destination / name)


SAMPLE_TEXT = "東京の紅葉した公園で"


@dataclass(frozen=True)
class TokenizerInfo:
    """What `swallow-trt tokenizer` shows of the tokenizer it built (or copied)."""

    directory: Path
    vocab: int
    bos_token_id: int
    eos_token_id: int
    sample: str
    sample_ids: list[int]


def prepare_tokenizer(output: Path | None = None) -> TokenizerInfo:
    """The offline tokenizer, built once (and copied to `output` when given), and a sample encoding."""
    directory = ensure_tokenizer()
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        copy_tokenizer(output)
        directory = output
    tokenizer = load_local_tokenizer(directory)
    ids = tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    return TokenizerInfo(
        directory, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, SAMPLE_TEXT, ids
    )
