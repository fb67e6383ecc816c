"""`swallow-trt plan`: does a model / quantization / TP fit a GPU, and how much KV cache is left?

The memory model, per GPU (GB = 10^9 bytes everywhere):
  weights   every decoder linear at its quantized width plus its scale tensors (quant_memory.py), split
            by TP as the converter splits them (trtllm-checkpoint.md 3.2: qkv/fc/gate on out, dense/proj
            on in, KV heads duplicated when TP > KV heads); norms bf16; the embedding bf16 and whole on
            every first-stage rank (use_parallel_embedding false); lm_head bf16 split over TP on the last
            stage. PP stages get layers as torch.tensor_split does (the first L % PP stages one more).
  reserve   the target's runtime reserve (engine: 2 GiB for the CUDA context, TensorRT runtime, cuBLAS and
            NCCL workspaces [assumed]; activations ~ max_num_tokens x (3 D + qkv + attn + 3 I/tp) x 2 B
            [estimate]; fp32 generation logits max_batch_size x vocab/tp x 4 B).
  KV pool   kv_cache_free_gpu_mem_fraction (0.9, the TensorRT-LLM default) of what is left.
  KV token  layers_on_stage x 2 x ceil(kv_heads / tp) x head_dim x bytes (bf16 2, FP8 1).
Sequences of length L that fit use 32-token blocks (tokens_per_block 32).

Targets are entries of TARGETS (memory reserve, KV fraction, quantizations, checks, recommended flags):
  engine   the reserve above; flags from trtllm_build_rules.
  pytorch  TensorRT-LLM's PyTorch backend on a HF / ModelOpt checkpoint: the same weights, a 3 GiB runtime
           (CUDA context, PyTorch caching allocator, NCCL) [assumed], the same activation and logits
           estimates, plus its CUDA graphs (one per captured batch size, up to ~200 MB each, counted at
           200 MB) [upper bound, trtllm-pytorch-backend.md 3.1]; the KV fraction and the options (with
           reasons) from llmapi_options. It also plans NVFP4 (Blackwell only).
`--target auto` picks by the installed TensorRT-LLM version (targets.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from trt_build.gpu_profiles import PROFILES, GpuProfile, get_profile
from trt_build.hf_config import LlamaArchitecture, read_hf_config
from trt_build.llmapi_options import (
    OptionsRequest,
    compose_options,
    cuda_graph_batch_sizes,
    flat_keys,
)
from trt_build.quant_memory import (
    AWQ_GROUP_SIZE,
    BF16_BYTES,
    FP32_BYTES,
    KV_CACHE_BYTES,
    KV_CACHE_DTYPES,
    QUANT_FORMATS,
    QuantFormat,
    format_for_quant_algo,
)
from trt_build.registry import lookup, parameter_count
from trt_build.targets import TARGET_CHOICES, hf_quantization, resolve_target
from trt_build.trtllm_build_rules import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    BuildRequest,
    compose,
)
from trt_build.trtllm_config import CheckpointError, architecture_from_checkpoint

GIB = 1 << 30
GB = 10**9
KV_CACHE_FREE_GPU_MEM_FRACTION = 0.9  # TensorRT-LLM KvCacheConfig default
TOKENS_PER_BLOCK = 32  # recent trtllm-build default (64 on 0.13)
TP_CHOICES = (1, 2, 4, 8)
RECOMMENDED_MIN_SEQUENCES = 16  # recommend the smallest TP that holds this many full-length sequences
CUDA_GRAPH_BYTES = 200 * 10**6  # per captured batch size, upper bound (trtllm-pytorch-backend.md 3.1)


@dataclass(frozen=True)
class Nvfp4Format(QuantFormat):
    """NVFP4 (ModelOpt, PyTorch backend only): e2m1 weights, an fp8 scale per 16 inputs, two fp32 scalars."""

    def linear_bytes(self, out_features: int, in_features: int) -> int:
        elements = out_features * in_features
        return elements // 2 + elements // 16 + 2 * FP32_BYTES


NVFP4 = Nvfp4Format("nvfp4", "NVFP4", 4, True, False, "NVFP4 weights and activations, block 16 (Blackwell)")
PLAN_QUANT_FORMATS: dict[str, QuantFormat] = {**QUANT_FORMATS, NVFP4.name: NVFP4}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: LlamaArchitecture
    source: str  # "registry", "hf-dir", "modelopt-checkpoint" or "trtllm-checkpoint"
    quant_algo: str | None = None  # a TRT-LLM checkpoint's own settings
    kv_cache_quant_algo: str | None = None
    tp: int | None = None
    pp: int | None = None


@dataclass(frozen=True)
class Scenario:
    model: ModelSpec
    gpu: GpuProfile
    quant: QuantFormat
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
        return max(1, self.arch.num_key_value_heads // self.tp)


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


@dataclass
class Plan:
    scenario: Scenario
    target: str
    stages: list[StageMemory]
    sequences: int  # full-length (max_seq_len) sequences whose KV fits on every stage
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recommended_tp: int | None = None
    recommended_tp_reason: str = ""
    flags: list[tuple[list[str], str]] = field(default_factory=list)
    command: str = ""

    @property
    def worst(self) -> StageMemory:
        return max(self.stages, key=lambda s: s.weight_bytes + s.reserve_bytes)

    @property
    def kv_tokens(self) -> int:
        return min(s.kv_tokens for s in self.stages)


# ---------------------------------------------------------------- the memory model


def stage_layer_counts(layers: int, pp: int) -> list[int]:
    """Layers per PP stage as torch.tensor_split assigns them (recent Mapping.pp_layers)."""
    return [layers // pp + (1 if stage < layers % pp else 0) for stage in range(pp)]


def layer_linear_shapes(arch: LlamaArchitecture, tp: int) -> dict[str, tuple[int, int]]:
    """(out, in) of each decoder linear on one TP rank (trtllm-checkpoint.md 3.2 / 3.3)."""
    d, hidden = arch.head_dim, arch.hidden_size
    heads, kv_heads, inter = (
        arch.num_attention_heads // tp,
        max(1, arch.num_key_value_heads // tp),
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
    padded_vocab = math.ceil(arch.vocab_size / s.tp) * s.tp
    first, last = stage == 0, stage == s.pp - 1
    return {
        "linears": layers * (per_layer + kv_scales),
        "norms": layers * 2 * arch.hidden_size * BF16_BYTES + (arch.hidden_size * BF16_BYTES if last else 0),
        "embedding": arch.vocab_size * arch.hidden_size * BF16_BYTES if first else 0,
        "lm_head": padded_vocab // s.tp * arch.hidden_size * BF16_BYTES if last else 0,
    }


def kv_bytes_per_token(s: Scenario, layers: int) -> int:
    return layers * 2 * s.kv_heads_per_rank * s.arch.head_dim * KV_CACHE_BYTES[s.kv_cache_quant_algo]


def engine_reserve(s: Scenario, stage: int) -> dict[str, int]:
    """Runtime memory besides weights and KV for a TensorRT engine (see the module docstring)."""
    arch, tp = s.arch, s.tp
    qkv = (arch.num_attention_heads // tp + 2 * s.kv_heads_per_rank) * arch.head_dim
    width = 3 * arch.hidden_size + qkv + arch.q_size // tp + 3 * (arch.intermediate_size // tp)
    last = stage == s.pp - 1
    return {
        "runtime": 2 * GIB,
        "activations": s.max_num_tokens * width * BF16_BYTES,
        "logits": s.max_batch_size * math.ceil(arch.vocab_size / tp) * FP32_BYTES if last else 0,
    }


def memory(
    s: Scenario,
    reserve: Callable[[Scenario, int], dict[str, int]],
    kv_fraction: Callable[[Scenario], float] = lambda s: KV_CACHE_FREE_GPU_MEM_FRACTION,
) -> tuple[list[StageMemory], int]:
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


# ---------------------------------------------------------------- checks


def structural_refusals(s: Scenario) -> list[str]:
    """Combinations that cannot be built at all, each with what to do instead."""
    arch, out = s.arch, []
    heads, kv = arch.num_attention_heads, arch.num_key_value_heads
    tp_ok = [t for t in range(1, 17) if heads % t == 0 and (t <= kv and kv % t == 0 or t % kv == 0)]
    if s.tp not in tp_ok:
        out.append(
            f"--tp {s.tp} does not split {heads} attention heads / {kv} KV heads evenly "
            f"(TP must divide the heads, and divide or be a multiple of the KV heads); use --tp in {tp_ok}."
        )
    pp_ok = [p for p in range(1, arch.num_hidden_layers + 1) if arch.num_hidden_layers % p == 0 and p <= 16]
    if s.pp not in pp_ok:
        out.append(
            f"--pp {s.pp} does not divide {arch.num_hidden_layers} layers (0.13 silently drops layers, "
            f"ModelOpt asserts); use --pp in {pp_ok}."
        )
    if s.quant.quant_algo == "W4A16_AWQ" and s.tp in tp_ok:
        widths = {"dense": arch.q_size // s.tp, "proj": arch.intermediate_size // s.tp}
        bad = {k: v for k, v in widths.items() if v % AWQ_GROUP_SIZE}
        if bad:
            good = [
                t
                for t in tp_ok
                if arch.q_size // t % AWQ_GROUP_SIZE == 0
                and arch.intermediate_size // t % AWQ_GROUP_SIZE == 0
            ]
            out.append(
                f"INT4 AWQ at --tp {s.tp}: each rank's input width must be a multiple of the group size 128 "
                f"({', '.join(f'{k} {v}' for k, v in bad.items())}; NVIDIA/TensorRT-LLM#1636); use --tp in {good}."
            )
    if s.max_seq_len > arch.max_position_embeddings:
        out.append(
            f"--max-seq-len {s.max_seq_len} is beyond the model's max_position_embeddings "
            f"{arch.max_position_embeddings}; use at most that."
        )
    return out


def target_refusals_and_warnings(s: Scenario) -> tuple[list[str], list[str]]:
    composition = compose(engine_request(s))
    return composition.refusals, composition.warnings


def feasible(s: Scenario, target: Target) -> bool:
    if structural_refusals(s) or target.checks(s)[0]:
        return False
    return memory(s, target.reserve, target.kv_fraction)[1] >= 1


def alternatives(s: Scenario, target: Target) -> list[str]:
    """What would work instead: more TP, a smaller format, an FP8 KV cache, a shorter max_seq_len."""
    out = []
    more_tp = [t for t in TP_CHOICES if t > s.tp and feasible(replace(s, tp=t), target)]
    if more_tp:
        out.append(
            f"--tp {more_tp[0]}" + (f" (or {', '.join(map(str, more_tp[1:]))})" if more_tp[1:] else "")
        )
    quants = [
        q.name
        for name, q in PLAN_QUANT_FORMATS.items()
        if name in target.quants and q != s.quant and feasible(replace(s, quant=q), target)
    ]
    if quants:
        out.append(f"--quant {' / '.join(quants)} at --tp {s.tp}")
    if s.kv_cache_quant_algo is None and feasible(replace(s, kv_cache_quant_algo="FP8"), target):
        out.append("--kv-cache-dtype fp8")
    shorter = [n for n in (65536, 32768, 16384, 8192, 4096, 2048) if n < s.max_seq_len]
    fits = [n for n in shorter if feasible(replace(s, max_seq_len=n), target)]
    if fits:
        out.append(f"--max-seq-len {fits[0]}")
    return out


def recommend_tp(s: Scenario, target: Target) -> tuple[int | None, str]:
    wanted = min(RECOMMENDED_MIN_SEQUENCES, s.max_batch_size)
    sequences = {
        t: memory(replace(s, tp=t), target.reserve, target.kv_fraction)[1]
        for t in TP_CHOICES
        if t * s.pp <= 8 and feasible(replace(s, tp=t), target)
    }
    good = [t for t, n in sequences.items() if n >= wanted]
    if good:
        return good[0], f"the smallest TP whose KV cache holds {wanted} sequences of {s.max_seq_len} tokens"
    if sequences:
        best = max(sequences, key=lambda t: sequences[t])
        return (
            best,
            f"no TP up to 8 holds {wanted} sequences of {s.max_seq_len} tokens; TP {best} holds the most",
        )
    return None, f"nothing up to TP {8 // s.pp} x PP {s.pp} fits this quantization on {s.gpu.name}"


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    reserve: Callable[[Scenario, int], dict[str, int]]
    checks: Callable[[Scenario], tuple[list[str], list[str]]]  # (refusals, warnings)
    flags: Callable[[Scenario], list[tuple[list[str], str]]]  # recommended settings with reasons
    command: Callable[[Scenario], str]
    quants: tuple[str, ...] = tuple(QUANT_FORMATS)  # --quant names this target deploys
    kv_fraction: Callable[[Scenario], float] = lambda s: KV_CACHE_FREE_GPU_MEM_FRACTION
    settings_title: str = "trtllm-build flags"


def engine_request(s: Scenario) -> BuildRequest:
    return BuildRequest(
        checkpoint_dir="<checkpoint>",
        output_dir="<engine>",
        gpu=s.gpu,
        quant_algo=s.quant.quant_algo,
        kv_cache_quant_algo=s.kv_cache_quant_algo,
        tp=s.tp,
        pp=s.pp,
        max_seq_len=s.max_seq_len,
        max_batch_size=s.max_batch_size,
        max_num_tokens=s.max_num_tokens,
    )


def engine_command(s: Scenario) -> str:
    kv = " KV_CACHE_DTYPE=fp8" if s.kv_cache_quant_algo == "FP8" else ""
    return (
        f"make engine MODEL={s.model.name} QUANT={s.quant.name}{kv} TP={s.tp} PP={s.pp} GPU={s.gpu.name} "
        f"MAX_SEQ_LEN={s.max_seq_len} MAX_BATCH_SIZE={s.max_batch_size}"
    )


def engine_checks(s: Scenario) -> tuple[list[str], list[str]]:
    if s.quant.name not in QUANT_FORMATS:
        return [f"the engine target does not build {s.quant.name}; plan it with --target pytorch."], []
    return target_refusals_and_warnings(s)


def options_request(s: Scenario) -> OptionsRequest:
    """The pytorch target's options for a scenario (a ModelOpt checkpoint's KV format is its own)."""
    forced = s.kv_cache_quant_algo == "FP8" and s.model.kv_cache_quant_algo != "FP8"
    return OptionsRequest(
        arch=s.arch,
        gpu=s.gpu,
        quant_algo=s.quant.quant_algo,
        checkpoint_kv_cache_quant_algo=s.model.kv_cache_quant_algo
        if s.model.source == "modelopt-checkpoint"
        else s.kv_cache_quant_algo,
        tp=s.tp,
        pp=s.pp,
        kv_cache_dtype="fp8" if forced else "auto",
        max_batch_size=s.max_batch_size,
        max_seq_len=s.max_seq_len,
        max_num_tokens=s.max_num_tokens,
    )


def pytorch_reserve(s: Scenario, stage: int) -> dict[str, int]:
    """Runtime memory besides weights and KV on the PyTorch backend (see the module docstring)."""
    engine = engine_reserve(s, stage)
    return {
        "runtime": 3 * GIB,
        "activations": engine["activations"],
        "logits": engine["logits"],
        "cuda_graphs": len(cuda_graph_batch_sizes(s.max_batch_size)) * CUDA_GRAPH_BYTES,
    }


def pytorch_checks(s: Scenario) -> tuple[list[str], list[str]]:
    if s.quant.name not in TARGETS["pytorch"].quants:
        return [f"the pytorch target deploys {', '.join(TARGETS['pytorch'].quants)}, not {s.quant.name}."], []
    composition = compose_options(options_request(s))
    return composition.refusals, composition.warnings


def pytorch_options(s: Scenario) -> list[tuple[list[str], str]]:
    return [
        ([", ".join(flat_keys(values))], reason)
        for values, reason in compose_options(options_request(s)).reasons
    ]


def pytorch_command(s: Scenario) -> str:
    kv = " KV_CACHE_DTYPE=fp8" if options_request(s).kv_cache_dtype == "fp8" else ""
    return (
        f"make engine TARGET=pytorch MODEL={s.model.name} QUANT={s.quant.name}{kv} TP={s.tp} PP={s.pp} "
        f"GPU={s.gpu.name} MAX_SEQ_LEN={s.max_seq_len} MAX_BATCH_SIZE={s.max_batch_size}"
    )


def pytorch_kv_fraction(s: Scenario) -> float:
    return compose_options(options_request(s)).options["kv_cache_config"]["free_gpu_memory_fraction"]


TARGETS: dict[str, Target] = {
    "engine": Target(
        name="engine",
        description="TRT-LLM checkpoint -> trtllm-build -> TensorRT engine -> Triton tensorrtllm backend",
        reserve=engine_reserve,
        checks=engine_checks,
        flags=lambda s: compose(engine_request(s)).reasons,
        command=engine_command,
    ),
    "pytorch": Target(
        name="pytorch",
        description="HF / ModelOpt checkpoint -> LLM-API options -> Triton llmapi model or trtllm-serve",
        reserve=pytorch_reserve,
        checks=pytorch_checks,
        flags=pytorch_options,
        command=pytorch_command,
        quants=("none", "fp8", "int4_awq", "nvfp4"),
        kv_fraction=pytorch_kv_fraction,
        settings_title="LLM-API options",
    ),
}


def make_plan(s: Scenario, target_name: str = "engine") -> Plan:
    target = TARGETS[target_name]
    refusals = structural_refusals(s)
    target_refusals, warnings = target.checks(s)
    refusals += target_refusals
    if refusals:
        return Plan(s, target_name, [], 0, refusals, warnings)
    stages, sequences = memory(s, target.reserve, target.kv_fraction)
    plan = Plan(s, target_name, stages, sequences, [], warnings)
    worst = plan.worst
    if worst.weight_bytes + worst.reserve_bytes > s.gpu.memory_bytes:
        plan.refusals.append(
            f"{s.model.name} {'bf16' if s.quant.quant_algo is None else s.quant.name} needs {worst.weight_bytes / GB:.1f} GB of weights per GPU at "
            f"TP {s.tp} x PP {s.pp} (+{worst.reserve_bytes / GB:.1f} GB runtime); one {s.gpu.name} has "
            f"{s.gpu.memory_bytes / GB:.0f} GB."
        )
    elif sequences < 1:
        plan.refusals.append(
            f"the weights fit, but the KV cache left ({plan.kv_tokens:,} tokens) cannot hold one sequence of "
            f"--max-seq-len {s.max_seq_len}."
        )
    if plan.refusals:
        options = alternatives(s, target)
        plan.refusals[-1] += f" Use {' or '.join(options)}." if options else " Use a larger GPU."
    plan.recommended_tp, plan.recommended_tp_reason = recommend_tp(s, target)
    if not plan.refusals:
        plan.flags = target.flags(s)
        plan.command = target.command(s)
    return plan


# ---------------------------------------------------------------- models


def _checkpoint_model(directory: Path, raw: dict[str, Any]) -> ModelSpec:
    """A TRT-LLM checkpoint's config.json: shape numbers plus its own quantization and mapping."""
    source = str(directory / "config.json")
    try:
        arch = architecture_from_checkpoint(raw)
    except KeyError as missing:
        raise click.ClickException(f"{source}: TRT-LLM checkpoint config lacks {missing}.") from None
    except CheckpointError as error:
        raise click.ClickException(f"{source}: {error}") from None
    quantization, mapping = raw.get("quantization") or {}, raw.get("mapping") or {}
    format_for_quant_algo(quantization.get("quant_algo"), source)
    return ModelSpec(
        name=directory.resolve().name,
        arch=arch,
        source="trtllm-checkpoint",
        quant_algo=quantization.get("quant_algo"),
        kv_cache_quant_algo=quantization.get("kv_cache_quant_algo"),
        tp=int(mapping.get("tp_size", 1)),
        pp=int(mapping.get("pp_size", 1)),
    )


def resolve_model(name: str) -> ModelSpec:
    """A registry id / short name, a Hugging Face model directory or a TRT-LLM checkpoint directory."""
    path = Path(name)
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise click.ClickException(
                f"{path} has no config.json: give a HF model or TRT-LLM checkpoint dir."
            )
        raw = json.loads(config.read_text())
        if "architecture" in raw and "architectures" not in raw:
            return _checkpoint_model(path, raw)
        quantization = hf_quantization(path)
        if quantization is not None:
            return ModelSpec(
                path.resolve().name,
                read_hf_config(path),
                "modelopt-checkpoint",
                quant_algo=quantization.get("quant_algo"),
                kv_cache_quant_algo=quantization.get("kv_cache_quant_algo"),
            )
        return ModelSpec(path.resolve().name, read_hf_config(path), "hf-dir")
    known = lookup(name)
    if known is None:
        raise click.ClickException(
            f"{name!r} is neither a directory nor a known Swallow model. `swallow-trt models` lists the known "
            "ones; for another model, `swallow-trt fetch` it and pass its directory."
        )
    return ModelSpec(known.short_name, known.architecture, "registry")


def _pick(option: str, given: Any, from_checkpoint: Any, default: Any, spec: ModelSpec) -> Any:
    fixed = spec.source == "trtllm-checkpoint" or (
        spec.source == "modelopt-checkpoint" and option == "--quant"
    )
    if not fixed:
        return default if given is None else given
    if given is not None and given != from_checkpoint:
        raise click.ClickException(
            f"{spec.name} is a {spec.source} converted with {option} {from_checkpoint}; "
            f"convert again to plan {option} {given}, or leave {option} out."
        )
    return from_checkpoint


def _format_name(quant_algo: str | None, source: str) -> str:
    for name, fmt in PLAN_QUANT_FORMATS.items():
        if fmt.quant_algo == quant_algo:
            return name
    raise click.ClickException(f"{source}: quant_algo {quant_algo!r} is not one swallow-trt plans.")


# ---------------------------------------------------------------- output


def _gb(n: int) -> str:
    return f"{n / GB:,.2f} GB"


def plan_dict(plan: Plan) -> dict[str, Any]:
    s = plan.scenario
    return {
        "model": s.model.name,
        "model_source": s.model.source,
        "parameters": parameter_count(s.arch),
        "gpu": s.gpu.as_dict(),
        "target": plan.target,
        "quant": s.quant.name,
        "quant_algo": s.quant.quant_algo,
        "kv_cache_quant_algo": s.kv_cache_quant_algo,
        "tp": s.tp,
        "pp": s.pp,
        "max_seq_len": s.max_seq_len,
        "max_batch_size": s.max_batch_size,
        "max_num_tokens": s.max_num_tokens,
        "feasible": not plan.refusals,
        "refusals": plan.refusals,
        "warnings": plan.warnings,
        "assumptions": {
            "kv_cache_free_gpu_mem_fraction": TARGETS[plan.target].kv_fraction(s),
            "tokens_per_block": TOKENS_PER_BLOCK,
            "gb": GB,
        },
        "stages": [dataclasses.asdict(st) | {"weight_bytes": st.weight_bytes} for st in plan.stages],
        "weight_bytes_per_gpu": max((st.weight_bytes for st in plan.stages), default=None),
        "kv_bytes_per_token_per_gpu": max((st.kv_bytes_per_token for st in plan.stages), default=None),
        "kv_tokens": plan.kv_tokens if plan.stages else None,
        "sequences_of_max_seq_len": plan.sequences if plan.stages else None,
        "recommended_tp": plan.recommended_tp,
        "recommended_tp_reason": plan.recommended_tp_reason,
        "flags": [{"flags": flags, "reason": reason} for flags, reason in plan.flags],
        "command": plan.command,
    }


def render(plan: Plan) -> str:
    s, lines = plan.scenario, []
    kv = "fp8" if s.kv_cache_quant_algo == "FP8" else "bf16"
    lines.append(
        f"{s.model.name} ({parameter_count(s.arch) / 1e9:.1f}B parameters) on {s.tp * s.pp} x {s.gpu.name} "
        f"({s.gpu.description}), target {plan.target}"
    )
    lines.append(f"  quantization  {s.quant.name} ({s.quant.description}), KV cache {kv}")
    lines.append(f"  parallelism   TP {s.tp} x PP {s.pp}")
    lines.append(
        f"  limits        max_seq_len {s.max_seq_len}, max_batch_size {s.max_batch_size}, "
        f"max_num_tokens {s.max_num_tokens}"
    )
    for st in plan.stages:
        title = f"Per GPU of PP stage {st.stage} ({st.layers} layers)" if s.pp > 1 else "Per GPU"
        parts = ", ".join(f"{k} {v / GB:.2f}" for k, v in st.weights.items() if v)
        held = ", ".join(f"{k} {v / GB:.2f}" for k, v in st.reserve.items() if v)
        left = s.gpu.memory_bytes - st.weight_bytes - st.reserve_bytes
        kv_bytes = KV_CACHE_BYTES[s.kv_cache_quant_algo]
        lines += [
            f"{title} (GB = 10^9 bytes; {s.gpu.name} {_gb(s.gpu.memory_bytes)}):",
            f"  weights             {_gb(st.weight_bytes):>12}  ({parts})",
            f"  runtime reserve     {_gb(st.reserve_bytes):>12}  ({held}; runtime assumed, activations estimated)",
            f"  KV cache pool       {_gb(st.kv_pool_bytes):>12}  ({TARGETS[plan.target].kv_fraction(s)} of {_gb(max(0, left))} left)",
            f"  KV bytes per token  {st.kv_bytes_per_token:>12,}  ({st.layers} layers x 2 x {s.kv_heads_per_rank} KV heads "
            f"x {s.arch.head_dim} x {kv_bytes} B)",
            f"  KV tokens that fit  {st.kv_tokens:>12,}",
        ]
    if plan.stages:
        queue = "; beyond that, full-length requests wait" if plan.sequences < s.max_batch_size else ""
        lines.append(
            f"Sequences of {s.max_seq_len} tokens that fit at once: {plan.sequences:,} "
            f"(max_batch_size {s.max_batch_size}{queue})"
        )
    if plan.recommended_tp is not None:
        lines.append(f"Recommended TP: {plan.recommended_tp} ({plan.recommended_tp_reason})")
    elif plan.recommended_tp_reason:
        lines.append(f"Recommended TP: none ({plan.recommended_tp_reason})")
    if plan.flags:
        lines.append(f"{TARGETS[plan.target].settings_title} ({plan.target} target) and why:")
        for flags, reason in plan.flags:
            if flags[0] in ("--checkpoint_dir", "--output_timing_cache"):
                continue
            lines.append(f"  {' '.join(flags):34} {reason}")
        lines.append(f"Build it: {plan.command}")
    lines += [f"Warning: {w}" for w in plan.warnings]
    lines += [f"Refused: {r}" for r in plan.refusals]
    return "\n".join(lines)


@click.command()
@click.option(
    "--model",
    "model_name",
    required=True,
    help="Registry id or short name, HF model dir or TRT-LLM checkpoint dir.",
)
@click.option("--gpu", "gpu_name", required=True, type=click.Choice(sorted(PROFILES), case_sensitive=False))
@click.option(
    "--quant",
    type=click.Choice(list(PLAN_QUANT_FORMATS)),
    default=None,
    help="Weight format [default: none; nvfp4: pytorch target, Blackwell].",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(list(KV_CACHE_DTYPES)),
    default=None,
    help="auto = bf16 [default: auto].",
)
@click.option(
    "--tp", type=click.IntRange(1, 64), default=None, help="Tensor parallelism [default: the recommended TP]."
)
@click.option("--pp", type=click.IntRange(1, 64), default=None, help="Pipeline parallelism [default: 1].")
@click.option("--max-seq-len", type=click.IntRange(1), default=DEFAULT_MAX_SEQ_LEN, show_default=True)
@click.option("--max-batch-size", type=click.IntRange(1), default=DEFAULT_MAX_BATCH_SIZE, show_default=True)
@click.option("--max-num-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NUM_TOKENS, show_default=True)
@click.option(
    "--target",
    type=click.Choice(TARGET_CHOICES),
    default="engine",
    show_default=True,
    help="auto: by the installed TensorRT-LLM version.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def command(
    model_name: str,
    gpu_name: str,
    quant: str | None,
    kv_cache_dtype: str | None,
    tp: int | None,
    pp: int | None,
    max_seq_len: int,
    max_batch_size: int,
    max_num_tokens: int,
    target: str,
    as_json: bool,
) -> None:
    """Plan GPU memory: weights and KV cache per GPU, sequences that fit, recommended TP and flags.

    Exits with status 1 (after printing the plan) when the combination cannot work.
    """
    target = resolve_target(target)
    spec = resolve_model(model_name)
    checkpoint_quant = None
    if spec.source == "trtllm-checkpoint":
        checkpoint_quant = format_for_quant_algo(spec.quant_algo).name
    elif spec.source == "modelopt-checkpoint":
        checkpoint_quant = _format_name(spec.quant_algo, str(Path(model_name) / "hf_quant_config.json"))
    checkpoint_kv = next((k for k, v in KV_CACHE_DTYPES.items() if v == spec.kv_cache_quant_algo), "auto")
    scenario = Scenario(
        model=spec,
        gpu=get_profile(gpu_name),
        quant=PLAN_QUANT_FORMATS[_pick("--quant", quant, checkpoint_quant, "none", spec)],
        kv_cache_quant_algo=KV_CACHE_DTYPES[
            _pick("--kv-cache-dtype", kv_cache_dtype, checkpoint_kv, "auto", spec)
            if spec.source != "modelopt-checkpoint"
            else (kv_cache_dtype or checkpoint_kv)
        ],
        tp=1,
        pp=_pick("--pp", pp, spec.pp, 1, spec),
        max_seq_len=max_seq_len,
        max_batch_size=max_batch_size,
        max_num_tokens=max_num_tokens,
    )
    chosen_tp = _pick("--tp", tp, spec.tp, None, spec)
    if chosen_tp is None:
        chosen_tp = recommend_tp(scenario, TARGETS[target])[0] or 1
    plan = make_plan(replace(scenario, tp=chosen_tp), target)
    click.echo(json.dumps(plan_dict(plan), indent=2) if as_json else render(plan))
    if plan.refusals:
        raise SystemExit(1)
