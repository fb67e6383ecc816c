"""What an engine or a deployment is sized for unless the command line says otherwise, stated once,
and what no target can be sized for.

`plan`, `build` (both targets) and the LLM-API options take their defaults from here, and Triton's
`tensorrt_llm` model its KV-cache share, so a plan sizes exactly what a build builds.
"""

from __future__ import annotations

from trt_build.formats.trtllm_config import GPUS_PER_NODE
from trt_build.parallel.rules import awq_refusal, pp_refusal, tp_fits, tp_refusal
from trt_build.source.hf_config import LlamaArchitecture

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_NUM_TOKENS",
    "DEFAULT_MAX_SEQ_LEN",
    "GPUS_PER_NODE",
    "KV_CACHE_FREE_GPU_MEM_FRACTION",
    "max_seq_len_refusal",
    "model_refusals",
]

DEFAULT_MAX_SEQ_LEN = 8192  # always passed explicitly: the model's own limit is 131072 tokens
DEFAULT_MAX_BATCH_SIZE = 256
DEFAULT_MAX_NUM_TOKENS = 8192  # tokens per scheduler step: bounds the activation memory
# TensorRT-LLM's default share of the memory left after the weights that the KV cache takes
# (KvCacheConfig.free_gpu_memory_fraction, Triton's kv_cache_free_gpu_mem_fraction).
KV_CACHE_FREE_GPU_MEM_FRACTION = 0.9


def max_seq_len_refusal(arch: LlamaArchitecture, max_seq_len: int) -> str | None:
    """Why `max_seq_len` cannot be served by this model, or None: the positions end where the model's do."""
    if max_seq_len <= arch.max_position_embeddings:
        return None
    return (
        f"--max-seq-len {max_seq_len} is beyond the model's max_position_embeddings "
        f"{arch.max_position_embeddings}; use at most that."
    )


def model_refusals(
    arch: LlamaArchitecture, tp: int, pp: int, awq_group_size: int | None, max_seq_len: int
) -> list[str]:
    """What no target can run for this model, each saying what would work: a TP or PP that does not split
    it, an AWQ group that does not divide a rank's input width, a sequence longer than its positions."""
    refusals = [tp_refusal(arch, tp), pp_refusal(arch, pp)]
    if awq_group_size and tp_fits(arch, tp):
        refusals.append(awq_refusal(arch, tp, awq_group_size))
    refusals.append(max_seq_len_refusal(arch, max_seq_len))
    return [refusal for refusal in refusals if refusal]
