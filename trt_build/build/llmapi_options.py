"""The LLM-API options of the pytorch target as a table of rules: (condition, options, reason).

The same YAML serves `trtllm-serve --extra_llm_api_options`, `trtllm-bench --extra_llm_api_options` and,
with `model` and `triton_config` added, the Triton `llmapi` model's `model.yaml` (every key goes to
`LLM(**kwargs)`). Each rule says when it applies, which keys it sets and why, so `swallow-trt build
--target pytorch --dry-run` and `swallow-trt plan --target pytorch` show the reason next to every key.
Refusals and warnings are rules too. Facts: docs/modelopt-checkpoint.md §3 (loader,
support matrix), §5.1 (arguments and defaults), §5.2 (parallelism), §7 (trtllm-bench's FP8 KV surprise).
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from typing import Any

from trt_build.build.limits import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    GPUS_PER_NODE,
    KV_CACHE_FREE_GPU_MEM_FRACTION,
    model_refusals,
)
from trt_build.build.rules import TP_OVER_PCIE, Check, Rule, always, applied, messages
from trt_build.common.gpus import GB, GpuProfile
from trt_build.quant.schemes import SCHEMES, pytorch_backend_schemes
from trt_build.source.hf_config import LlamaArchitecture

OPTIONS_FILE = "llm_api_options.yaml"
KV_FRACTION_SMALL_GPU = 0.85  # [heuristic] below SMALL_GPU_BYTES, more room for CUDA graphs
SMALL_GPU_BYTES = 60 * GB
CUDA_GRAPH_BYTES = 200 * 10**6  # one captured decode graph, upper bound (docs/modelopt-checkpoint.md §5.1)
# quant_algo (hf_quant_config.json) -> what the PyTorch backend does with it, for Llama
# (docs/modelopt-checkpoint.md §3.7)
PYTORCH_QUANT_ALGOS: dict[str | None, str] = {
    s.quant_algo: s.description for s in pytorch_backend_schemes().values()
}


@dataclass(frozen=True)
class OptionsRequest:
    """Everything the options depend on: the checkpoint's shape and quantization, the GPU, the limits."""

    arch: LlamaArchitecture
    gpu: GpuProfile
    quant_algo: str | None  # the checkpoint's (hf_quant_config.json), None = bf16
    checkpoint_kv_cache_quant_algo: str | None
    tp: int = 1
    pp: int = 1
    kv_cache_dtype: str = "auto"  # kv_cache_config.dtype: auto = the checkpoint's, fp8 = force FP8
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS
    # the KV cache's share of the memory free after the weights; None = the rule's (by GPU size). A
    # deployment choice sets the share its predictor modelled (build/choice.py).
    kv_cache_free_gpu_memory_fraction: float | None = None

    @property
    def fp8_kv(self) -> bool:
        return self.kv_cache_dtype == "fp8" or self.checkpoint_kv_cache_quant_algo == "FP8"

    @property
    def world_size(self) -> int:
        return self.tp * self.pp


def cuda_graph_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below max_batch_size, and max_batch_size itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


def _small_gpu(request: OptionsRequest) -> bool:
    return request.gpu.memory_bytes < SMALL_GPU_BYTES


def kv_cache_fraction(gpu: GpuProfile) -> float:
    """The KV share of free memory the options write for this GPU, and so the one the predictor models."""
    return KV_FRACTION_SMALL_GPU if gpu.memory_bytes < SMALL_GPU_BYTES else KV_CACHE_FREE_GPU_MEM_FRACTION


def _kv_share_given(request: OptionsRequest) -> bool:
    return request.kv_cache_free_gpu_memory_fraction is not None


# In order; nested blocks (kv_cache_config, cuda_graph_config) are merged key by key.
RULES: list[Rule[OptionsRequest, dict[str, Any]]] = [
    Rule(
        always,
        lambda r: {"tensor_parallel_size": r.tp, "pipeline_parallel_size": r.pp},
        "the parallelism: the LLM API spawns one worker per GPU itself (MPI pool), no per-rank files",
    ),
    Rule(
        always,
        lambda r: {"max_batch_size": r.max_batch_size, "max_num_tokens": r.max_num_tokens},
        "explicit scheduler limits (LLM-API defaults 2048 / 8192); max_num_tokens bounds the tokens per "
        "iteration and so the activation memory",
    ),
    Rule(
        always,
        lambda r: {"max_seq_len": r.max_seq_len},
        "always explicit: otherwise it comes from the HF config (131072 for Llama 3.1) and sizes the "
        "attention window and KV reservation for it",
    ),
    Rule(
        always,
        lambda r: {"enable_chunked_prefill": True},
        "long prompts are split into max_num_tokens chunks that share iterations with decoding "
        "(default off), so one long prompt does not stall every stream",
    ),
    Rule(
        _kv_share_given,
        lambda r: {"kv_cache_config": {"free_gpu_memory_fraction": r.kv_cache_free_gpu_memory_fraction}},
        "the KV-cache share the deployment choice was predicted with (`plan --save`), so the deployed "
        "cache is the one the prediction modelled",
    ),
    Rule(
        lambda r: not _kv_share_given(r) and not _small_gpu(r),
        lambda r: {"kv_cache_config": {"free_gpu_memory_fraction": kv_cache_fraction(r.gpu)}},
        f"the KV cache takes {KV_CACHE_FREE_GPU_MEM_FRACTION} of the memory free after the weights (the "
        "default, written down); the rest holds CUDA graphs and allocator slack",
    ),
    Rule(
        lambda r: not _kv_share_given(r) and _small_gpu(r),
        lambda r: {"kv_cache_config": {"free_gpu_memory_fraction": kv_cache_fraction(r.gpu)}},
        f"under {SMALL_GPU_BYTES // GB} GB the default {1 - KV_CACHE_FREE_GPU_MEM_FRACTION:.0%} left after the "
        f"KV cache is only a few GB, and CUDA graphs (up to ~{CUDA_GRAPH_BYTES // 10**6} MB each) come out of "
        f"it: keep {1 - KV_FRACTION_SMALL_GPU:.0%} [heuristic]",
    ),
    Rule(
        always,
        lambda r: {"kv_cache_config": {"enable_block_reuse": True}},
        "prefix (system prompt / chat history) KV blocks are reused across requests",
    ),
    Rule(
        always,
        lambda r: {"kv_cache_config": {"dtype": r.kv_cache_dtype}},
        "explicit KV dtype: auto keeps the checkpoint's kv_cache_quant_algo, fp8 forces an FP8 cache; "
        "trtllm-bench otherwise silently picks FP8 KV for FP8/NVFP4 checkpoints",
    ),
    Rule(
        always,
        lambda r: {
            "cuda_graph_config": {
                "batch_sizes": cuda_graph_batch_sizes(r.max_batch_size),
                "enable_padding": True,
            }
        },
        "decode steps run as CUDA graphs captured for powers of two up to max_batch_size; padding sends "
        "other batch sizes to the next captured graph instead of eager mode",
    ),
]


# Followed by the model refusals every target shares (build/limits.py model_refusals).
REFUSALS: list[Check[OptionsRequest]] = [
    Check(
        lambda r: r.quant_algo not in PYTORCH_QUANT_ALGOS,
        lambda r: (
            f"quant_algo {r.quant_algo!r} is not one swallow-trt deploys on the PyTorch backend (known: "
            f"{', '.join(str(k) for k in PYTORCH_QUANT_ALGOS)}). Export with `swallow-trt convert --target "
            "pytorch --quant none|fp8|int4_awq`."
        ),
    ),
    Check(
        lambda r: r.quant_algo == "NVFP4" and r.gpu.sm < 100,
        lambda r: (
            f"NVFP4 needs Blackwell tensor cores (SM 100/103/120); {r.gpu.name} is SM {r.gpu.sm} (no NVFP4 "
            "GEMM on Hopper/Ada/Ampere, 'Arch unsupported for CUTLASS FP4 GEMM'). Convert with --quant fp8 "
            "or --quant int4_awq for this GPU, or deploy on a b200."
        ),
    ),
    Check(
        lambda r: r.quant_algo == "FP8" and not r.gpu.fp8,
        lambda r: (
            f"FP8 weights need FP8 tensor cores (SM >= 89); {r.gpu.name} is SM {r.gpu.sm}. Convert with "
            "--quant int4_awq (or none) for this GPU, or deploy on an H100/H200/L40S."
        ),
    ),
    Check(
        lambda r: r.fp8_kv and not r.gpu.fp8,
        lambda r: (
            f"an FP8 KV cache needs SM >= 89; {r.gpu.name} is SM {r.gpu.sm}. Use --kv-cache-dtype auto with "
            "a checkpoint exported without FP8 KV."
        ),
    ),
]

WARNINGS: list[Check[OptionsRequest]] = [
    Check(
        lambda r: r.fp8_kv,
        lambda r: (
            "FP8 KV cache: the PyTorch backend uses a unity K/V scale (checkpoint k_scale/v_scale are read "
            "only for NVFP4 KV); check Japanese accuracy with FP8 KV on and off."
        ),
    ),
    TP_OVER_PCIE,
    Check(
        lambda r: r.world_size > GPUS_PER_NODE,
        lambda r: (
            f"world size {r.world_size} is more than {GPUS_PER_NODE} GPUs per node: launch with "
            "`srun --mpi=pmix ... trtllm-llmapi-launch` across nodes."
        ),
    ),
]


@dataclass
class OptionsComposition:
    options: dict[str, Any] = field(default_factory=dict)
    reasons: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (keys set, why)
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def merge_options(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Merge `new` into `into`, nested blocks key by key (a non-dict value, None included, replaces)."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_options(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def compose_options(request: OptionsRequest) -> OptionsComposition:
    """The LLM-API options for `request`, the reason for every key, refusals and warnings."""
    group = next((s.group_size for s in SCHEMES.values() if s.quant_algo == request.quant_algo), None)
    model = model_refusals(request.arch, request.tp, request.pp, group, request.max_seq_len)
    composition = OptionsComposition(
        reasons=applied(RULES, request),
        refusals=messages(REFUSALS, request) + model,
        warnings=messages(WARNINGS, request),
    )
    for values, _ in composition.reasons:
        merge_options(composition.options, values)
    return composition


def flat_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """`kv_cache_config.dtype: fp8`-style lines for display."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += flat_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {value}")
    return out


def trtllm_serve_argv(
    checkpoint: str, options_path: str, tp: int, pp: int, host: str = "127.0.0.1", port: int = 8000
) -> list[str]:
    """trtllm-serve for a deployment: the checkpoint dir, the options YAML (it overrides the CLI values)."""
    return [
        "trtllm-serve",
        checkpoint,
        "--backend",
        "pytorch",
        "--host",
        host,
        "--port",
        str(port),
        "--tp_size",
        str(tp),
        "--pp_size",
        str(pp),
        "--extra_llm_api_options",
        options_path,
    ]


def explain(composition: OptionsComposition, yaml_text: str, serve_argv: list[str]) -> str:
    """The YAML with a comment per rule saying why its keys are there (what --dry-run prints)."""
    lines = ["# LLM-API options composed by swallow-trt (pytorch target); why each key is there:"]
    for values, reason in composition.reasons:
        lines.append(f"#   {', '.join(flat_keys(values))}: {reason}")
    lines += [f"# WARNING: {warning}" for warning in composition.warnings]
    lines.append(yaml_text.rstrip())
    lines.append(f"# serve it: {shlex.join(serve_argv)}")
    return "\n".join(lines)
