"""`swallow-trt plan`: does a model / quantization / TP fit a GPU, and how much KV cache is left?

A scenario (model, GPU, format, KV cache, TP x PP, limits) is sized by the memory model (memory.py)
for a target (targets.py: engine or pytorch), after the refusals that hold on any GPU. A refused
plan names what would work instead; every plan recommends the smallest TP that holds enough full-length
sequences, and a feasible one gives the target's settings with reasons and the `make engine` line.
`--model` may be a registry id or a checkpoint, whose own settings are kept (model.py). render.py shows
a plan as text or JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from trt_build.build.limits import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    GPUS_PER_NODE,
    model_refusals,
)
from trt_build.common.gpus import GB, gpu_for_plan
from trt_build.common.targets import resolve_target
from trt_build.plan.memory import Scenario, StageMemory
from trt_build.plan.model import checkpoint_setting, pick, resolve_model
from trt_build.plan.targets import TARGETS, Target
from trt_build.quant.schemes import KV_CACHE_DTYPES, SCHEMES

TP_CHOICES = (1, 2, 4, 8)
RECOMMENDED_MIN_SEQUENCES = 16  # recommend the smallest TP that holds this many full-length sequences
SHORTER_SEQ_LENS = (65536, 32768, 16384, 8192, 4096, 2048)  # --max-seq-len alternatives, longest first


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

    @property
    def kv_fraction(self) -> float:
        return TARGETS[self.target].kv_fraction(self.scenario)


# ---------------------------------------------------------------- checks


def structural_refusals(s: Scenario) -> list[str]:
    """Combinations that cannot be built at all, each with what to do instead."""
    return model_refusals(s.arch, s.tp, s.pp, s.quant.group_size, s.max_seq_len)


def feasible(s: Scenario, target: Target) -> bool:
    if structural_refusals(s) or target.checks(s)[0]:
        return False
    return target.memory(s)[1] >= 1


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
        for name, q in SCHEMES.items()
        if name in target.quants and q != s.quant and feasible(replace(s, quant=q), target)
    ]
    if quants:
        out.append(f"--quant {' / '.join(quants)} at --tp {s.tp}")
    if s.kv_cache_quant_algo is None and feasible(replace(s, kv_cache_quant_algo="FP8"), target):
        out.append("--kv-cache-dtype fp8")
    shorter = [n for n in SHORTER_SEQ_LENS if n < s.max_seq_len]
    fits = [n for n in shorter if feasible(replace(s, max_seq_len=n), target)]
    if fits:
        out.append(f"--max-seq-len {fits[0]}")
    return out


def recommend_tp(s: Scenario, target: Target) -> tuple[int | None, str]:
    wanted = min(RECOMMENDED_MIN_SEQUENCES, s.max_batch_size)
    sequences = {
        t: target.memory(replace(s, tp=t))[1]
        for t in TP_CHOICES
        if t * s.pp <= GPUS_PER_NODE and feasible(replace(s, tp=t), target)
    }
    good = [t for t, n in sequences.items() if n >= wanted]
    if good:
        return good[0], f"the smallest TP whose KV cache holds {wanted} sequences of {s.max_seq_len} tokens"
    if sequences:
        best = max(sequences, key=lambda t: sequences[t])
        return (
            best,
            f"no TP up to {max(TP_CHOICES)} holds {wanted} sequences of {s.max_seq_len} tokens; TP {best} "
            "holds the most",
        )
    return (
        None,
        f"nothing up to TP {GPUS_PER_NODE // s.pp} x PP {s.pp} fits this quantization on {s.gpu.name}",
    )


def make_plan(s: Scenario, target_name: str = "engine") -> Plan:
    target = TARGETS[target_name]
    refusals = structural_refusals(s)
    target_refusals, warnings = target.checks(s)
    refusals += [r for r in target_refusals if r not in refusals]  # both may state a rule (TP, AWQ) once
    if refusals:
        return Plan(s, target_name, [], 0, refusals, warnings)
    stages, sequences = target.memory(s)
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


@dataclass(frozen=True)
class PlanRequest:
    """What `swallow-trt plan` is asked for; None: the checkpoint's own setting, else the default."""

    model_name: str  # a registry id or short name, a HF model dir, a ModelOpt or TRT-LLM checkpoint dir
    gpu_name: str | None  # a GPU profile (common/gpus.py); None: one known only by gpu_memory_gb
    gpu_memory_gb: float | None = None  # the memory of one GPU, replacing the profile's
    quant: str | None = None  # default none
    kv_cache_dtype: str | None = None  # default auto, or a ModelOpt checkpoint's own KV format
    tp: int | None = None  # default: the recommended TP
    pp: int | None = None  # default 1
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS
    target: str = "engine"  # engine, pytorch or auto


def plan_for(request: PlanRequest) -> Plan:
    """The plan of a request, refused or not (a refused plan has .refusals and says what would work)."""
    target = resolve_target(request.target)
    spec = resolve_model(request.model_name)
    # A ModelOpt checkpoint's own KV format is the default (auto for a model without one).
    own_kv = checkpoint_setting(spec, "--kv-cache-dtype")
    scenario = Scenario(
        model=spec,
        gpu=gpu_for_plan(request.gpu_name, request.gpu_memory_gb),
        quant=SCHEMES[pick(spec, "--quant", request.quant, "none")],
        kv_cache_quant_algo=KV_CACHE_DTYPES[
            pick(spec, "--kv-cache-dtype", request.kv_cache_dtype, own_kv)
        ].quant_algo,
        tp=1,
        pp=pick(spec, "--pp", request.pp, 1),
        max_seq_len=request.max_seq_len,
        max_batch_size=request.max_batch_size,
        max_num_tokens=request.max_num_tokens,
    )
    chosen_tp = pick(spec, "--tp", request.tp, None)
    if chosen_tp is None:
        chosen_tp = recommend_tp(scenario, TARGETS[target])[0] or 1
    return make_plan(replace(scenario, tp=chosen_tp), target)
