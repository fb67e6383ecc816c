"""The trtllm-build command as a table of rules: (condition, flags, reason).

Each rule says when it applies, which flags it adds and why, so `swallow-trt build --dry-run` and
`swallow-trt plan` can show the reason next to every flag. Refusals and warnings are rules too.
Facts: docs/trtllm-checkpoint.md §5 (§5.1 defaults, §5.2 the automatic FMHA / KV
interactions, §5.3 the recommended settings on H100/H200) and the builder's SM >= 100 check (§4.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trt_build.build.limits import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    GPUS_PER_NODE,
)
from trt_build.build.rules import TP_OVER_PCIE, Check, Rule, always, applied, messages
from trt_build.common.gpus import GpuProfile
from trt_build.quant.schemes import SCHEMES

INT_WEIGHT_ALGOS = tuple(s.quant_algo for s in SCHEMES.values() if s.int_weights)
FP8_CONTEXT_FMHA_ALGOS = ("FP8", "W4A8_AWQ", "NVFP4")  # builder.py keeps FP8 context FMHA only for these


@dataclass(frozen=True)
class BuildRequest:
    """Everything the command depends on: the checkpoint's quantization and mapping, the GPU, the limits."""

    checkpoint_dir: str
    output_dir: str
    gpu: GpuProfile
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    tp: int
    pp: int
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_input_len: int | None = None  # None: max_seq_len
    max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS
    workers: int | None = None  # None: the ranks on this node
    gpus_per_node: int = GPUS_PER_NODE
    timing_cache: str | None = None  # None: beside the output directory

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    @property
    def ranks_on_node(self) -> int:
        return min(self.world_size, self.gpus_per_node)

    @property
    def build_workers(self) -> int:
        return self.workers or self.ranks_on_node

    @property
    def timing_cache_path(self) -> str:
        return self.timing_cache or f"{self.output_dir.rstrip('/')}.timing.cache"

    @property
    def fp8_kv(self) -> bool:
        return self.kv_cache_quant_algo == "FP8"

    @property
    def fp8_weights(self) -> bool:
        return self.quant_algo == "FP8"


def _paged_context_fmha_off(request: BuildRequest) -> bool:
    """builder.py: FP8 KV + weights outside FP8_CONTEXT_FMHA_ALGOS -> paged context FMHA is switched off."""
    return request.fp8_kv and request.quant_algo not in FP8_CONTEXT_FMHA_ALGOS


# In order: the command is the concatenation of the flags of every rule that applies.
RULES: list[Rule[BuildRequest, list[str]]] = [
    Rule(
        always,
        lambda r: ["--checkpoint_dir", r.checkpoint_dir, "--output_dir", r.output_dir],
        "the TRT-LLM checkpoint to build and where the engine goes (TP/PP come from its config.json mapping)",
    ),
    Rule(
        always,
        lambda r: ["--max_seq_len", str(r.max_seq_len)],
        "always explicit: without it the engine is sized for max_position_embeddings = 131072 tokens "
        "(131072 x 8 = 1,048,576 on 0.13, which multiplied by the llama3 rope factor)",
    ),
    Rule(
        always,
        lambda r: ["--max_input_len", str(r.max_input_len or r.max_seq_len)],
        "the longest prompt the engine accepts (default 1024); defaults to max_seq_len",
    ),
    Rule(
        always,
        lambda r: ["--max_batch_size", str(r.max_batch_size), "--max_num_tokens", str(r.max_num_tokens)],
        "explicit because the defaults changed between versions (batch 256 on 0.13, 2048 recent); "
        "max_num_tokens bounds the tokens per step and so the activation memory",
    ),
    Rule(
        always,
        lambda r: ["--kv_cache_type", "paged"],
        "paged KV cache, needed by in-flight batching in the Triton tensorrtllm backend",
    ),
    Rule(
        _paged_context_fmha_off,
        lambda r: ["--use_paged_context_fmha", "disable"],
        "an FP8 KV cache without FP8 weights cannot use FP8 context FMHA, so the builder turns paged "
        "context FMHA off (0.13 raises instead): no chunked prefill and no KV-cache reuse",
    ),
    Rule(
        lambda r: not _paged_context_fmha_off(r),
        lambda r: ["--use_paged_context_fmha", "enable"],
        "chunked prefill and KV-cache reuse need it (default off on 0.13, on in recent versions)",
    ),
    Rule(
        lambda r: r.fp8_weights and r.fp8_kv,
        lambda r: ["--use_fp8_context_fmha", "enable"],
        "FP8 weights with an FP8 KV cache run the context attention in FP8 (default off on 0.13)",
    ),
    Rule(
        lambda r: r.fp8_weights,
        lambda r: ["--use_fused_mlp", "enable"],
        "FP8 only: fuses the gate and up GEMMs (the builder forces it off for INT4/INT8 formats)",
    ),
    Rule(
        lambda r: not r.fp8_weights,
        lambda r: ["--gemm_plugin", "auto"],
        "bf16 / AWQ / weight-only: the bf16 GEMM plugin for the GEMMs that stay in bf16, as in the "
        "TRT-LLM README examples (for FP8 the perf guide says leave it off)",
    ),
    Rule(
        lambda r: r.tp > 1,
        lambda r: ["--reduce_fusion", "enable"],
        "TP > 1 only: fuses the all-reduce with the residual add and RMSNorm (Llama); ignored at TP 1",
    ),
    Rule(
        always,
        lambda r: ["--multiple_profiles", "enable"],
        "several TensorRT optimisation profiles for small and large batches (recommended for serving; "
        "the build takes longer)",
    ),
    Rule(
        always,
        lambda r: ["--workers", str(r.build_workers)],
        "builds the ranks on this node in parallel (one per GPU, capped at the local GPU count)",
    ),
    Rule(
        always,
        lambda r: ["--output_timing_cache", r.timing_cache_path],
        "keeps the TensorRT timing cache beside the engine instead of model.cache in the current "
        "directory; a rebuild with the same cache is faster",
    ),
]

REFUSALS: list[Check[BuildRequest]] = [
    Check(
        lambda r: (r.fp8_weights or r.fp8_kv) and not r.gpu.fp8,
        lambda r: (
            f"FP8 {'weights' if r.fp8_weights else 'KV cache'} need FP8 tensor cores (compute capability "
            f">= 8.9); {r.gpu.name} is {r.gpu.compute_capability[0]}.{r.gpu.compute_capability[1]}. "
            "Convert with --quant int4_awq or --quant int8_wo and a bf16 KV cache (--kv-cache-dtype auto), "
            "or build on an H100/H200/L40S."
        ),
    ),
    Check(
        lambda r: r.quant_algo in INT_WEIGHT_ALGOS and 100 <= r.gpu.sm < 120,
        lambda r: (
            f"trtllm-build refuses INT8/INT4 weights ({r.quant_algo}) on SM >= 100 ({r.gpu.name}, SM "
            f"{r.gpu.sm}): 'INT8/INT4 quantization is not supported on SM>=100'. Convert with --quant fp8 "
            "(or none) for this GPU."
        ),
    ),
    Check(
        lambda r: r.max_input_len is not None and r.max_input_len > r.max_seq_len,
        lambda r: f"--max-input-len {r.max_input_len} is larger than --max-seq-len {r.max_seq_len}.",
    ),
]

WARNINGS: list[Check[BuildRequest]] = [
    Check(
        _paged_context_fmha_off,
        lambda r: (
            f"{r.quant_algo or 'bf16'} weights with an FP8 KV cache: paged context FMHA is turned off, so "
            "there is no chunked prefill and no KV-cache reuse. Convert with --kv-cache-dtype auto (bf16 "
            "KV) if you need them."
        ),
    ),
    TP_OVER_PCIE,
    Check(
        lambda r: r.world_size > r.gpus_per_node,
        lambda r: (
            f"world size {r.world_size} is more than {r.gpus_per_node} GPUs per node: build and run on "
            "several nodes with MPI; this command builds only the ranks given to it."
        ),
    ),
]


@dataclass
class Composition:
    argv: list[str]
    reasons: list[tuple[list[str], str]] = field(default_factory=list)  # (flags, why)
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def compose(request: BuildRequest, program: str = "trtllm-build") -> Composition:
    """The trtllm-build argv for `request`, with the reason for every flag, refusals and warnings."""
    reasons = applied(RULES, request)
    return Composition(
        argv=[program, *(flag for flags, _ in reasons for flag in flags)],
        reasons=reasons,
        refusals=messages(REFUSALS, request),
        warnings=messages(WARNINGS, request),
    )
