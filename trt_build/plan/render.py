"""A plan as the person at the terminal reads it (text) and as scripts read it (JSON)."""

from __future__ import annotations

import dataclasses
from typing import Any

from trt_build.common.gpus import GB
from trt_build.plan.memory import TOKENS_PER_BLOCK
from trt_build.plan.planner import Plan
from trt_build.plan.targets import TARGETS
from trt_build.quant.schemes import kv_cache_dtype_for
from trt_build.source.registry import parameter_count


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
