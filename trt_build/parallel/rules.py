"""Which tensor / pipeline parallel degrees a Llama model can be split into, and how: the one set of rules.

Convert, the reference runtime, the memory model, the planner and the LLM-API options all decide TP and PP
here, so they cannot disagree (docs/trtllm-checkpoint.md §3).

TP must divide the attention heads and the MLP width, and divide the KV heads or be a multiple of them (the
KV heads are then duplicated on each rank). PP gives each stage contiguous layers.

Version-dependent, decided once: an uneven layer count per stage. TensorRT-LLM 0.13 gave every stage
L // pp layers and silently dropped the rest; every release this toolkit targets (the 1.2.x engine line
and the PyTorch backend of 1.x) shares `Mapping.pp_layers`, which splits like `torch.tensor_split` (the
first L % pp stages get one more layer). So an uneven split is allowed everywhere, split that way, and a
stage only needs at least one layer.
"""

from __future__ import annotations

import math

from trt_build.common.errors import SwallowTrtError
from trt_build.source.hf_config import LlamaArchitecture

MAX_TP = 16  # the TP values the planner offers and searches (two 8-GPU nodes)


def tp_fits(arch: LlamaArchitecture, tp: int) -> bool:
    heads, kv = arch.num_attention_heads, arch.num_key_value_heads
    kv_ok = kv % tp == 0 if tp <= kv else tp % kv == 0
    return heads % tp == 0 and kv_ok and arch.intermediate_size % tp == 0


def tp_choices(arch: LlamaArchitecture, limit: int = MAX_TP) -> list[int]:
    return [t for t in range(1, limit + 1) if tp_fits(arch, t)]


def tp_refusal(arch: LlamaArchitecture, tp: int) -> str | None:
    if tp_fits(arch, tp):
        return None
    return (
        f"--tp {tp} does not split {arch.num_attention_heads} attention heads / {arch.num_key_value_heads} KV "
        f"heads / MLP width {arch.intermediate_size} evenly (TP must divide the heads and the MLP width, and "
        f"divide or be a multiple of the KV heads); use --tp in {tp_choices(arch)}."
    )


def pp_refusal(arch: LlamaArchitecture, pp: int) -> str | None:
    if 1 <= pp <= arch.num_hidden_layers:
        return None
    return (
        f"--pp {pp} is larger than the number of layers ({arch.num_hidden_layers}); every pipeline stage needs "
        f"at least one layer. Use --pp between 1 and {arch.num_hidden_layers}."
    )


def check_parallelism(arch: LlamaArchitecture, tp: int, pp: int) -> None:
    """Refuse tp/pp degrees TensorRT-LLM cannot run for this model, saying why and what would work."""
    for refusal in (tp_refusal(arch, tp), pp_refusal(arch, pp)):
        if refusal:
            raise SwallowTrtError(refusal)


def rank_coordinates(rank: int, tp: int) -> tuple[int, int]:
    """(tp_rank, pp_rank) of a rank, as TensorRT-LLM's Mapping numbers them (cp = 1)."""
    return rank % tp, rank // tp


def pp_layers(num_layers: int, pp: int, pp_rank: int) -> range:
    """Global layers of a stage, split like torch.tensor_split: the first L % pp stages get one more."""
    base, extra = divmod(num_layers, pp)
    start = pp_rank * base + min(pp_rank, extra)
    return range(start, start + base + (1 if pp_rank < extra else 0))


def stage_layer_counts(num_layers: int, pp: int) -> list[int]:
    return [len(pp_layers(num_layers, pp, stage)) for stage in range(pp)]


def padded_vocab(vocab_size: int, tp: int) -> int:
    """lm_head rows over all ranks: the vocab zero-padded to a multiple of TP."""
    return math.ceil(vocab_size / tp) * tp


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    """Each rank holds ceil(K / tp) KV heads; with tp > K the heads are duplicated."""
    return max(1, num_kv_heads // tp)


# ---------------------------------------------------------------- AWQ groups per rank


def awq_rank_widths(arch: LlamaArchitecture, tp: int) -> dict[str, int]:
    """Each rank's input width of every linear: AWQ groups run along it. q/k/v and gate/up see the whole
    hidden state; o_proj and down_proj are split along their input."""
    return {
        "q/k/v, gate/up": arch.hidden_size,
        "o_proj": arch.q_size // tp,
        "down_proj": arch.intermediate_size // tp,
    }


def awq_refusal(arch: LlamaArchitecture, tp: int, group_size: int) -> str | None:
    """None when the AWQ group divides every rank's input width (NVIDIA/TensorRT-LLM#1636), else why not
    and what would work."""
    widths = awq_rank_widths(arch, tp)
    bad = {name: width for name, width in widths.items() if width % group_size}
    if not bad:
        return None
    good = [t for t in tp_choices(arch) if not any(w % group_size for w in awq_rank_widths(arch, t).values())]
    listed = ", ".join(f"{name} {width}" for name, width in bad.items())
    instead = f"--tp in {good}, or " if good else ""
    return (
        f"INT4 AWQ group size {group_size} does not divide the input dimension of every linear on a rank at "
        f"--tp {tp} ({listed}): AWQ scales run along each rank's input. Use {instead}a group size "
        f"(convert --group-size) that divides {math.gcd(*widths.values())}."
    )


def check_awq_group(arch: LlamaArchitecture, tp: int, group_size: int) -> None:
    if refusal := awq_refusal(arch, tp, group_size):
        raise SwallowTrtError(refusal)
