"""Served test models whose greedy answers are known, each behind a real tritonserver (CPU engine).

The cycle model: a tiny Swallow that walks a cycle of Japanese tokens. Every decoder layer is zeroed (the residual stream carries the embedding through) and the embeddings and
`lm_head` map token i of the cycle to token i+1, so greedy decoding from any cycle token walks the cycle.
The cycle "紅葉😀𠮷野家齉" holds an emoji and rare kanji split over 2-4 byte-level tokens each, so every
stream really has to reassemble characters split across tokens. It continues the cycle from the
prompt's last token, so a prompt picks where the answer starts.

The chain model (trt_build/source/chain_model.py): answers one fixed Japanese sentence of split
characters, then `<|eot_id|>`, to any prompt.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from triton_repo.launch.tritonserver import TritonServer
from triton_repo.repository.write import RepoOptions, write_repository
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.source.chain_model import write_chain_model
from trt_build.source.tokenizer import copy_tokenizer

CYCLE = "紅葉😀𠮷野家齉"
PROMPT = "紅"  # [BOS, 紅]: greedy continues the cycle from 葉
ANSWER_9 = "葉😀𠮷野家"  # 1 + 2 + 4 + 1 + 1 tokens
CYCLE_TOKENS = 12  # tokens per lap of the cycle
MAX_INPUT_LEN, MAX_SEQ_LEN = 64, 4096


def answer(tokenizer, max_tokens: int) -> str:
    """The full decode of the first `max_tokens` tokens the model answers PROMPT with."""
    ids = tokenizer.encode(CYCLE, add_special_tokens=False)
    walked = [ids[(1 + step) % len(ids)] for step in range(max_tokens)]
    return tokenizer.decode(walked, skip_special_tokens=True)


def write_cycle_model(tiny_model_dir: Path, output: Path, tokenizer) -> list[int]:
    """Zero every layer and map token i -> i+1 of the cycle; returns the cycle's ids."""
    from transformers import AutoModelForCausalLM

    ids = tokenizer.encode(CYCLE, add_special_tokens=False)
    assert len(set(ids)) == len(ids) == CYCLE_TOKENS
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    embed, head = model.model.embed_tokens.weight, model.lm_head.weight
    assert embed.data_ptr() != head.data_ptr()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.fill_(1.0 if name.endswith("norm.weight") else 0.0)
        for slot, token in enumerate(ids):
            embed[token, slot] = 1.0
            head[ids[(slot + 1) % len(ids)], slot] = 10.0
    model.save_pretrained(output)
    copy_tokenizer(output)
    return ids


@contextlib.contextmanager
def cycle_server(root: Path, tiny_model_dir: Path, tokenizer) -> Iterator[TritonServer]:
    """A real tritonserver serving the cycle model's engine repository (CPU reference engine)."""
    model_dir = root / "cycle-model"
    write_cycle_model(tiny_model_dir, model_dir, tokenizer)
    checkpoint = convert_checkpoint(model_dir, root / "checkpoint")
    repo = write_repository(
        RepoOptions(
            root / "repo",
            model_dir,
            checkpoint_dir=checkpoint,
            max_input_len=MAX_INPUT_LEN,
            max_seq_len=MAX_SEQ_LEN,
        )
    )
    with TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as running:
        yield running


@contextlib.contextmanager
def chain_server(root: Path) -> Iterator[TritonServer]:
    """A real tritonserver serving the chain model's engine repository (CPU reference engine)."""
    model_dir = write_chain_model(root / "chain")
    checkpoint = convert_checkpoint(model_dir, root / "checkpoint")
    repo = write_repository(
        RepoOptions(root / "repo", model_dir, checkpoint_dir=checkpoint, max_input_len=512, max_seq_len=1024)
    )
    with TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as running:
        yield running


def error_text(body: bytes) -> str:
    """The message of an error answer (Triton's and the gate's are {"error": message})."""
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")
