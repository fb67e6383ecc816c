"""A model whose greedy answer to any prompt is one fixed Japanese sentence, then `<|eot_id|>`.

It is built, not trained: its decoder layers add nothing to the residual stream (their `o_proj` and
`down_proj` are zero, so attention and MLP compute on seeded random weights and contribute zero), so
the logits depend only on the current token. Each token of the
sentence gets its own slot of the hidden state; `embed_tokens` puts it there and `lm_head` maps slot
`i` to the sentence's token `i + 1`, the last slot to `<|eot_id|>`, and one shared slot (every other
token: BOS, the chat template, any prompt) to the first token. So greedy decoding walks the sentence
whatever was asked, which makes every serving path's answer known byte for byte.

The default sentence is full of what breaks streaming detokenization: kanji and emoji whose UTF-8
bytes are split over 2-4 byte-level tokens, a ZWJ sequence, a flag, a variation selector, half-width
katakana, a combining voiced mark and 𠮷 (outside the BMP). Because the next token depends only on the
current one, every token of the sentence must be distinct; that is why the sentence uses 😵‍💫 and 🇳🇴
(their tokens do not repeat) rather than 👨‍👩‍👧 or 🇯🇵, whose regional indicators and emoji
prefixes tokenize to the same ids twice.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.source.hf_config import LlamaArchitecture
from trt_build.source.tiny_model import PRESETS, random_tensor, write_hf_model
from trt_build.source.tokenizer import BOS_ID, EOT_ID, ensure_tokenizer

CHAIN_PRESET = "chain"  # its name among `tiny-model --preset` choices
CHAIN_SENTENCE = (
    "鎌倉⛩️の紅葉は美しい😵\u200d💫 🇳🇴から来た𠮷田さんもか\u3099っこいいｿﾊﾞを食べ、齉鼻で鬱々と笑う。"
)
# The winning logit. The runner-up is 0 for every other token, so even sampling at temperature 1
# picks the chain: e^32 outweighs the other 128k tokens by about 10^8.
CHAIN_LOGIT = 32.0
# The projections that write into the residual stream: zero makes a decoder layer the identity.
LAYER_OUTPUTS = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


def chain_token_ids(sentence: str, tokenizer=None) -> list[int]:
    """The sentence's token ids (no BOS); refuses a sentence a context-free chain cannot walk."""
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer())
    ids = tokenizer.encode(sentence, add_special_tokens=False)
    if not ids:
        raise SwallowTrtError("The chain sentence is empty.", "Give a sentence of at least one token.")
    if tokenizer.decode(ids) != sentence:
        raise SwallowTrtError(
            f"The tokenizer does not give back {sentence!r} from its own tokens.",
            "Choose a sentence without text the tokenizer normalizes.",
        )
    seen: dict[int, int] = {}
    for position, token in enumerate(ids):
        if token in seen or token >= BOS_ID:  # repeated, or a special token
            piece = tokenizer.decode([token])
            raise SwallowTrtError(
                f"Token {token} ({piece!r}) of the chain sentence is at positions {seen.get(token)} and "
                f"{position}, or is special: a model without context cannot walk it.",
                "Choose a sentence whose tokens are all distinct (e.g. change the repeated character).",
            )
        seen[token] = position
    return ids


def chain_architecture(slots: int, layers: int) -> LlamaArchitecture:
    """The tiny preset, widened (in steps of 64) to one hidden slot per sentence token plus one."""
    hidden = 64 * math.ceil(slots / 64)
    return dataclasses.replace(
        PRESETS["tiny"],
        hidden_size=hidden,
        num_attention_heads=hidden // PRESETS["tiny"].head_dim,
        num_hidden_layers=layers,
    )


def chain_tensor(ids: list[int], arch: LlamaArchitecture):
    """The tensor source for `write_hf_model`: the chain in embed_tokens / lm_head, identity layers."""
    others = len(ids)  # the slot shared by every token outside the sentence
    # RMSNorm scales a one-hot hidden state of 1.0 to sqrt(hidden); lm_head divides that back out.
    weight = CHAIN_LOGIT / math.sqrt(arch.hidden_size)
    successors = [*ids[1:], EOT_ID]

    def tensor(name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        if name.startswith("model.layers.") and not name.endswith(LAYER_OUTPUTS):
            return random_tensor(name, dtype, shape, seed=0)
        out = torch.zeros(shape, dtype=torch.float32)
        if name.endswith("norm.weight"):
            out.fill_(1.0)
        elif name == "model.embed_tokens.weight":
            out[:, others] = 1.0
            out[ids, others] = 0.0
            out[ids, list(range(len(ids)))] = 1.0
        elif name == "lm_head.weight":
            out[successors, list(range(len(ids)))] = weight
            out[ids[0], others] = weight
        return out.to(dtype)

    return tensor


def write_chain_model(
    output: Path, sentence: str = CHAIN_SENTENCE, layers: int = 1, overwrite: bool = False
) -> Path:
    """Write an HF model directory (Llama 3.1 architecture and tokenizer) that answers `sentence`.

    One identity layer by default: transformers runs a Llama with `layers=0`, but the converter (like
    TensorRT-LLM's pipeline stages) wants at least one layer per stage, and a real layer exercises the
    engine's attention and KV cache."""
    ids = chain_token_ids(sentence)
    arch = chain_architecture(len(ids) + 1, layers)
    return write_hf_model(
        output,
        arch,
        chain_tensor(ids, arch),
        manifest_fields=dict(preset=CHAIN_PRESET, sentence=sentence, sentence_token_ids=ids),
        overwrite=overwrite,
    )
