"""The Hugging Face -> TensorRT-LLM weight map and its tensor/pipeline-parallel split rules, as one table.

Spec: docs/trtllm-checkpoint.md §3. `WEIGHT_MAP` is data (gpt-fast style): each row names
a TRT-LLM tensor, the HF tensors it is made of, how it is split over tensor-parallel ranks and which
pipeline stage holds it. Both directions are derived from it: `rank_plan` says which slices of which HF
tensors make up one rank's tensor (so the converter reads only that part), and `merge` puts the rank
shards back together (so the reference runtime can invert the conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from trt_build.parallel.rules import kv_heads_per_rank, padded_vocab, pp_layers, rank_coordinates
from trt_build.source.hf_config import LlamaArchitecture, hf_tensor_shapes

if TYPE_CHECKING:  # only merging rank shards back makes tensors; planning a conversion needs no torch
    import torch


class Split(Enum):
    REPLICATE = "replicate"  # every rank holds the whole tensor (norms)
    COLUMN = "column"  # ColumnLinear: equal blocks of dim 0 (output features)
    ROW = "row"  # RowLinear: equal blocks of dim 1 (input features)
    QKV = "qkv"  # q, k, v each split on dim 0 (k, v after KV-head duplication), then [q; k; v]
    VOCAB = "vocab"  # rows padded with zeros to a multiple of tp, then dim 0 (lm_head)
    EMBEDDING = "embedding"  # REPLICATE, or VOCAB with --use-parallel-embedding


class Stage(Enum):
    FIRST = "first"  # only on the first pipeline stage
    LAYER = "layer"  # one per decoder layer, on the stage that owns the layer
    LAST = "last"  # only on the last pipeline stage


@dataclass(frozen=True)
class WeightRule:
    """One TRT-LLM tensor: `{i}` is the stage-local layer index, `{L}` the global one."""

    trt: str
    hf: tuple[str, ...]
    split: Split
    stage: Stage
    linear: bool = False  # a quantizable linear weight (goes through the quant scheme)
    tied_hf: tuple[str, ...] | None = None  # sources when tie_word_embeddings is set


_LAYER = "model.layers.{L}."
WEIGHT_MAP: tuple[WeightRule, ...] = (
    WeightRule(
        "transformer.vocab_embedding.weight", ("model.embed_tokens.weight",), Split.EMBEDDING, Stage.FIRST
    ),
    WeightRule(
        "transformer.layers.{i}.input_layernorm.weight",
        (_LAYER + "input_layernorm.weight",),
        Split.REPLICATE,
        Stage.LAYER,
    ),
    WeightRule(
        "transformer.layers.{i}.attention.qkv.weight",
        tuple(_LAYER + f"self_attn.{p}_proj.weight" for p in "qkv"),
        Split.QKV,
        Stage.LAYER,
        linear=True,
    ),
    WeightRule(
        "transformer.layers.{i}.attention.dense.weight",
        (_LAYER + "self_attn.o_proj.weight",),
        Split.ROW,
        Stage.LAYER,
        linear=True,
    ),
    WeightRule(
        "transformer.layers.{i}.post_layernorm.weight",
        (_LAYER + "post_attention_layernorm.weight",),
        Split.REPLICATE,
        Stage.LAYER,
    ),
    # TRT-LLM's GatedMLP computes proj(silu(fc(x)) * gate(x)): HF gate_proj is `fc`, up_proj is `gate`.
    WeightRule(
        "transformer.layers.{i}.mlp.fc.weight",
        (_LAYER + "mlp.gate_proj.weight",),
        Split.COLUMN,
        Stage.LAYER,
        True,
    ),
    WeightRule(
        "transformer.layers.{i}.mlp.gate.weight",
        (_LAYER + "mlp.up_proj.weight",),
        Split.COLUMN,
        Stage.LAYER,
        True,
    ),
    WeightRule(
        "transformer.layers.{i}.mlp.proj.weight",
        (_LAYER + "mlp.down_proj.weight",),
        Split.ROW,
        Stage.LAYER,
        True,
    ),
    WeightRule("transformer.ln_f.weight", ("model.norm.weight",), Split.REPLICATE, Stage.LAST),
    WeightRule(
        "lm_head.weight",
        ("lm_head.weight",),
        Split.VOCAB,
        Stage.LAST,
        tied_hf=("model.embed_tokens.weight",),
    ),
)


# --- forward: which slices of which HF tensors make up a rank's tensor ------------------------------


@dataclass(frozen=True)
class SourceSlice:
    """Rows [row_start, row_stop) and columns [col_start, col_stop) of one HF tensor, then `pad_rows` zeros.

    col_stop is None for "all columns" (and for 1-D tensors).
    """

    hf: str
    row_start: int
    row_stop: int
    col_start: int = 0
    col_stop: int | None = None
    pad_rows: int = 0

    def shape(self, full: tuple[int, ...]) -> tuple[int, ...]:
        rows = self.row_stop - self.row_start + self.pad_rows
        if len(full) == 1:
            return (rows,)
        return (rows, (self.col_stop if self.col_stop is not None else full[1]) - self.col_start)


@dataclass(frozen=True)
class RankTensor:
    """One tensor of one rank file: its TRT-LLM name, rank shape, and the HF slices concatenated on dim 0."""

    name: str
    rule: WeightRule
    layer: int | None  # global layer index, None for embedding / ln_f / lm_head
    slices: tuple[SourceSlice, ...]
    shape: tuple[int, ...]


def _block(size: int, parts: int, index: int) -> tuple[int, int]:
    step = size // parts
    return index * step, (index + 1) * step


def _vocab_slice(hf: str, vocab: int, tp: int, tp_rank: int) -> SourceSlice:
    rows = padded_vocab(vocab, tp) // tp
    start = min(tp_rank * rows, vocab)
    stop = min(start + rows, vocab)
    return SourceSlice(hf, start, stop, pad_rows=rows - (stop - start))


def _slices(
    split: Split,
    sources: tuple[str, ...],
    shapes: dict[str, tuple[int, ...]],
    arch: LlamaArchitecture,
    tp: int,
    tp_rank: int,
    parallel_embedding: bool,
) -> tuple[SourceSlice, ...]:
    first = sources[0]
    rows = shapes[first][0]
    if split is Split.EMBEDDING:
        split = Split.VOCAB if parallel_embedding else Split.REPLICATE
    if split is Split.REPLICATE:
        return (SourceSlice(first, 0, rows),)
    if split is Split.COLUMN:
        return (SourceSlice(first, *_block(rows, tp, tp_rank)),)
    if split is Split.ROW:
        start, stop = _block(shapes[first][1], tp, tp_rank)
        return (SourceSlice(first, 0, rows, start, stop),)
    if split is Split.VOCAB:
        return (_vocab_slice(first, arch.vocab_size, tp, tp_rank),)
    q, k, v = sources
    kv = arch.num_key_value_heads
    if tp > kv:  # duplicate each KV head tp/kv times consecutively, then chunk: rank r gets head r*kv//tp
        head = tp_rank * kv // tp
        kv_rows = (head * arch.head_dim, (head + 1) * arch.head_dim)
    else:
        kv_rows = _block(arch.kv_size, tp, tp_rank)
    return (
        SourceSlice(q, *_block(arch.q_size, tp, tp_rank)),
        SourceSlice(k, *kv_rows),
        SourceSlice(v, *kv_rows),
    )


def rank_plan(
    arch: LlamaArchitecture, tp: int, pp: int, rank: int, parallel_embedding: bool = False
) -> list[RankTensor]:
    """Every tensor of `rank{rank}.safetensors`, in file order, with the HF slices it is made of."""
    tp_rank, pp_rank = rank_coordinates(rank, tp)
    shapes = hf_tensor_shapes(arch)
    placements: list[tuple[WeightRule, int | None, int | None]] = []
    layers = pp_layers(arch.num_hidden_layers, pp, pp_rank)
    for stage, wanted in ((Stage.FIRST, pp_rank == 0), (Stage.LAYER, True), (Stage.LAST, pp_rank == pp - 1)):
        rules = [rule for rule in WEIGHT_MAP if rule.stage is stage]
        if stage is Stage.LAYER:
            placements += [(rule, local, layer) for local, layer in enumerate(layers) for rule in rules]
        elif wanted:
            placements += [(rule, None, None) for rule in rules]
    plan = []
    for rule, local, layer in placements:
        templates = rule.tied_hf if (arch.tie_word_embeddings and rule.tied_hf) else rule.hf
        sources = tuple(name.format(L=layer) for name in templates)
        slices = _slices(rule.split, sources, shapes, arch, tp, tp_rank, parallel_embedding)
        parts = [piece.shape(shapes[piece.hf]) for piece in slices]
        shape = (sum(part[0] for part in parts), *parts[0][1:])
        plan.append(RankTensor(rule.trt.format(i=local), rule, layer, slices, shape))
    return plan


# --- inverse: rank shards back to the HF tensors ----------------------------------------------------


def _merge_qkv(pieces: list[torch.Tensor], arch: LlamaArchitecture) -> list[torch.Tensor]:
    import torch

    tp = len(pieces)
    q_rows = arch.q_size // tp
    kv_rows = kv_heads_per_rank(arch.num_key_value_heads, tp) * arch.head_dim
    splits = [piece.split([q_rows, kv_rows, kv_rows]) for piece in pieces]
    copies = max(1, tp // arch.num_key_value_heads)  # undo duplication: keep one rank per KV head
    q = torch.cat([part[0] for part in splits])
    k = torch.cat([part[1] for part in splits[::copies]])
    v = torch.cat([part[2] for part in splits[::copies]])
    return [q, k, v]


def _cat(pieces: list[torch.Tensor], dim: int) -> torch.Tensor:
    import torch

    return torch.cat(pieces, dim=dim)


MERGE: dict[Split, Callable[[list[torch.Tensor], LlamaArchitecture], list[torch.Tensor]]] = {
    Split.REPLICATE: lambda pieces, arch: [pieces[0]],
    Split.COLUMN: lambda pieces, arch: [_cat(pieces, 0)],
    Split.ROW: lambda pieces, arch: [_cat(pieces, 1)],
    Split.VOCAB: lambda pieces, arch: [_cat(pieces, 0)[: arch.vocab_size]],
    Split.QKV: _merge_qkv,
}


def merge(
    rule: WeightRule, pieces: list[torch.Tensor], arch: LlamaArchitecture, parallel_embedding: bool = False
) -> list[torch.Tensor]:
    """The HF tensors (in the order of `rule.hf`) from the tp rank shards of one TRT-LLM tensor."""
    split = rule.split
    if split is Split.EMBEDDING:
        split = Split.VOCAB if parallel_embedding else Split.REPLICATE
    return MERGE[split](pieces, arch)
