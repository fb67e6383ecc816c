"""`swallow-trt plan`: does a model / quantization / TP fit a GPU, and how much KV cache is left?

A scenario (model, GPU, format, KV cache, TP x PP, limits) is sized by the memory model (plan_memory.py)
for a target (plan_targets.py: engine or pytorch), after the refusals that hold on any GPU. A refused
plan names what would work instead; every plan recommends the smallest TP that holds enough full-length
sequences, and a feasible one gives the target's settings with reasons and the `make engine` line.
`--model` may be a registry id or a checkpoint, whose own settings are kept (plan_model.py).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from typing import Any

import click

from trt_build.build.trtllm_build_rules import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
)
from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.gpus import GB, PROFILES, get_profile
from trt_build.common.targets import TARGET_CHOICES, resolve_target
from trt_build.parallel.rules import awq_refusal, pp_refusal, tp_fits, tp_refusal
from trt_build.plan.memory import TOKENS_PER_BLOCK, Scenario, StageMemory
from trt_build.plan.model import checkpoint_setting, pick, resolve_model
from trt_build.plan.targets import TARGETS, Target
from trt_build.quant.schemes import KV_CACHE_DTYPES, SCHEMES, kv_cache_dtype_for
from trt_build.source.registry import parameter_count

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
    arch = s.arch
    out = [r for r in (tp_refusal(arch, s.tp), pp_refusal(arch, s.pp)) if r]
    if s.quant.group_size and tp_fits(arch, s.tp) and (awq := awq_refusal(arch, s.tp, s.quant.group_size)):
        out.append(awq)
    if s.max_seq_len > arch.max_position_embeddings:
        out.append(
            f"--max-seq-len {s.max_seq_len} is beyond the model's max_position_embeddings "
            f"{arch.max_position_embeddings}; use at most that."
        )
    return out


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
            "kv_cache_free_gpu_mem_fraction": plan.kv_fraction,
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
        lines += [
            f"{title} (GB = 10^9 bytes; {s.gpu.name} {_gb(s.gpu.memory_bytes)}):",
            f"  weights             {_gb(st.weight_bytes):>12}  ({parts})",
            f"  runtime reserve     {_gb(st.reserve_bytes):>12}  ({held}; runtime assumed, activations estimated)",
            f"  KV cache pool       {_gb(st.kv_pool_bytes):>12}  ({plan.kv_fraction} of {_gb(max(0, left))} left)",
            f"  KV bytes per token  {st.kv_bytes_per_token:>12,}  ({st.layers} layers x 2 x {s.kv_heads_per_rank} KV heads "
            f"x {s.arch.head_dim} x {kv_cache_dtype_for(s.kv_cache_quant_algo).bytes} B)",
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


@click.command(cls=SwallowTrtCommand)
@click.option(
    "--model",
    "model_name",
    required=True,
    help="Registry id or short name, HF model dir or TRT-LLM checkpoint dir.",
)
@click.option("--gpu", "gpu_name", required=True, type=click.Choice(sorted(PROFILES), case_sensitive=False))
@click.option(
    "--quant",
    type=click.Choice(list(SCHEMES)),
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
    # A ModelOpt checkpoint's own KV format is the default (auto for a model without one).
    own_kv = checkpoint_setting(spec, "--kv-cache-dtype")
    scenario = Scenario(
        model=spec,
        gpu=get_profile(gpu_name),
        quant=SCHEMES[pick(spec, "--quant", quant, "none")],
        kv_cache_quant_algo=KV_CACHE_DTYPES[
            pick(spec, "--kv-cache-dtype", kv_cache_dtype, own_kv)
        ].quant_algo,
        tp=1,
        pp=pick(spec, "--pp", pp, 1),
        max_seq_len=max_seq_len,
        max_batch_size=max_batch_size,
        max_num_tokens=max_num_tokens,
    )
    chosen_tp = pick(spec, "--tp", tp, None)
    if chosen_tp is None:
        chosen_tp = recommend_tp(scenario, TARGETS[target])[0] or 1
    plan = make_plan(replace(scenario, tp=chosen_tp), target)
    click.echo(json.dumps(plan_dict(plan), indent=2) if as_json else render(plan))
    if plan.refusals:
        raise SystemExit(1)
