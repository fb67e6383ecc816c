"""The planner's memory model: what one GPU of a scenario holds, and how much KV cache is left.

Per GPU (GB = 10^9 bytes everywhere):
  weights   every decoder linear at its quantized width plus its scale tensors (quant/schemes.py), split
            by TP as the converter splits them (docs/trtllm-checkpoint.md §3.2: qkv/fc/gate on out, dense/proj
            on in, KV heads duplicated when TP > KV heads); norms bf16; the embedding bf16 and whole on
            every first-stage rank (use_parallel_embedding false); lm_head bf16 split over TP on the last
            stage. PP stages get layers as torch.tensor_split does (parallel/rules.py).
  reserve   the target's runtime (plan/targets.py: a fixed amount per target [assumed]); activations
            ~ max_num_tokens x (3 D + qkv + attn + 3 I/tp) x 2 B [estimate]; fp32 generation logits
            max_batch_size x vocab/tp x 4 B; on the pytorch target also its CUDA graphs, one per batch size
            its options capture, counted at the upper bound CUDA_GRAPH_BYTES each
            [upper bound, docs/modelopt-checkpoint.md §5.1].
  KV pool   the target's KV fraction (kv_cache_free_gpu_mem_fraction, build/limits.py) of what is left.
  KV token  layers_on_stage x 2 x ceil(kv_heads / tp) x head_dim x bytes (bf16 2, FP8 1).
Sequences of length L that fit use 32-token blocks (tokens_per_block 32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from trt_build.build.limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_NUM_TOKENS, DEFAULT_MAX_SEQ_LEN
from trt_build.build.llmapi_options import CUDA_GRAPH_BYTES
from trt_build.common.gpus import GpuProfile
from trt_build.parallel.rules import kv_heads_per_rank, padded_vocab, stage_layer_counts
from trt_build.quant.schemes import BF16_BYTES, FP32_BYTES, QuantScheme, kv_cache_dtype_for
from trt_build.source.hf_config import LlamaArchitecture

GIB = 1 << 30
TOKENS_PER_BLOCK = 32  # recent trtllm-build default (64 on 0.13)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: LlamaArchitecture
    source: str  # "registry", "hf-dir", "modelopt-checkpoint" or "trtllm-checkpoint"
    quant_algo: str | None = None  # a checkpoint's own settings
    kv_cache_quant_algo: str | None = None
    tp: int | None = None
    pp: int | None = None
    quant: str | None = None  # a checkpoint's quant_algo as a --quant name


@dataclass(frozen=True)
class Scenario:
    model: ModelSpec
    gpu: GpuProfile
    quant: QuantScheme
    kv_cache_quant_algo: str | None
    tp: int
    pp: int
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS

    @property
    def arch(self) -> LlamaArchitecture:
        return self.model.arch

    @property
    def kv_heads_per_rank(self) -> int:
        return kv_heads_per_rank(self.arch.num_key_value_heads, self.tp)


@dataclass
class StageMemory:
    """One pipeline stage; all TP ranks of a stage hold the same bytes."""

    stage: int
    layers: int
    weights: dict[str, int]
    reserve: dict[str, int]
    kv_bytes_per_token: int
    kv_pool_bytes: int
    kv_tokens: int

    @property
    def weight_bytes(self) -> int:
        return sum(self.weights.values())

    @property
    def reserve_bytes(self) -> int:
        return sum(self.reserve.values())


def layer_linear_shapes(arch: LlamaArchitecture, tp: int) -> dict[str, tuple[int, int]]:
    """(out, in) of each decoder linear on one TP rank (docs/trtllm-checkpoint.md §3.2 / §3.3)."""
    d, hidden = arch.head_dim, arch.hidden_size
    heads, kv_heads, inter = (
        arch.num_attention_heads // tp,
        kv_heads_per_rank(arch.num_key_value_heads, tp),
        arch.intermediate_size // tp,
    )
    return {
        "qkv": ((heads + 2 * kv_heads) * d, hidden),
        "dense": (hidden, heads * d),
        "fc": (inter, hidden),
        "gate": (inter, hidden),
        "proj": (hidden, inter),
    }


def stage_weights(s: Scenario, stage: int, layers: int) -> dict[str, int]:
    arch = s.arch
    per_layer = sum(s.quant.linear_bytes(o, i) for o, i in layer_linear_shapes(arch, s.tp).values())
    kv_scales = 2 * FP32_BYTES if s.kv_cache_quant_algo else 0  # kv_cache_scaling_factor + its reciprocal
    first, last = stage == 0, stage == s.pp - 1
    return {
        "linears": layers * (per_layer + kv_scales),
        "norms": layers * 2 * arch.hidden_size * BF16_BYTES + (arch.hidden_size * BF16_BYTES if last else 0),
        "embedding": arch.vocab_size * arch.hidden_size * BF16_BYTES if first else 0,
        "lm_head": padded_vocab(arch.vocab_size, s.tp) // s.tp * arch.hidden_size * BF16_BYTES if last else 0,
    }


def kv_bytes_per_token(s: Scenario, layers: int) -> int:
    return (
        layers * 2 * s.kv_heads_per_rank * s.arch.head_dim * kv_cache_dtype_for(s.kv_cache_quant_algo).bytes
    )


def runtime_reserve(s: Scenario, stage: int, runtime_bytes: int, cuda_graphs: int | None) -> dict[str, int]:
    """Runtime memory besides weights and KV (see the module docstring); `cuda_graphs` is the number of
    captured graphs, None for a target that captures none (the key is then left out)."""
    arch, tp = s.arch, s.tp
    qkv = (arch.num_attention_heads // tp + 2 * s.kv_heads_per_rank) * arch.head_dim
    width = 3 * arch.hidden_size + qkv + arch.q_size // tp + 3 * (arch.intermediate_size // tp)
    last = stage == s.pp - 1
    held = {
        "runtime": runtime_bytes,
        "activations": s.max_num_tokens * width * BF16_BYTES,
        "logits": s.max_batch_size * padded_vocab(arch.vocab_size, tp) // tp * FP32_BYTES if last else 0,
    }
    if cuda_graphs is not None:
        held["cuda_graphs"] = cuda_graphs * CUDA_GRAPH_BYTES
    return held


def memory(
    s: Scenario,
    reserve: Callable[[Scenario, int], dict[str, int]],
    kv_fraction: Callable[[Scenario], float],
) -> tuple[list[StageMemory], int]:
    """Every stage's bytes, and how many full-length (max_seq_len) sequences fit on all of them."""
    stages = []
    for stage, layers in enumerate(stage_layer_counts(s.arch.num_hidden_layers, s.pp)):
        weights, held = stage_weights(s, stage, layers), reserve(s, stage)
        left = s.gpu.memory_bytes - sum(weights.values()) - sum(held.values())
        pool = max(0, int(left * kv_fraction(s)))
        per_token = kv_bytes_per_token(s, layers)
        stages.append(StageMemory(stage, layers, weights, held, per_token, pool, pool // per_token))
    blocks_per_sequence = math.ceil(s.max_seq_len / TOKENS_PER_BLOCK)
    sequences = min(st.kv_tokens // TOKENS_PER_BLOCK for st in stages) // blocks_per_sequence
    return stages, sequences
