"""The LLM-API options of each Dynamo worker role: the pytorch target's options for the role's parallelism
and limits (build/llmapi_options.py), then the rows below, which make prefill and decode workers differ as
Dynamo's TensorRT-LLM examples do (docs/upstream-2026.md §5.5).

Refusals come from the same places as the pytorch target's (the GPU and quantization rules, the model's
TP / PP rules), plus the placement rule of a worker spanning nodes and the combinations TensorRT-LLM does
not accept in a disaggregated graph, checked on the options as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynamo_deploy.commands import options_file
from dynamo_deploy.request import DeployRequest
from trt_build.build.choice import role_options_request
from trt_build.build.llmapi_options import OptionsComposition, compose_options, merge_options
from trt_build.build.rules import Check, Rule, applied, messages
from trt_build.formats.kinds import CheckpointKind
from trt_build.plan.deployment import RoleChoice
from trt_build.source.hf_config import LlamaArchitecture

# What the cache transceiver uses to move KV blocks: DEFAULT lets TensorRT-LLM pick (NIXL or UCX).
CACHE_TRANSCEIVER_BACKEND = "DEFAULT"


@dataclass(frozen=True)
class RoleRequest:
    """One role of one deployment: what its extra rows depend on."""

    role: RoleChoice
    max_seq_len: int


ROLE_RULES: list[Rule[RoleRequest, dict[str, Any]]] = [
    Rule(
        lambda r: r.role.role == "prefill",
        lambda r: {"disable_overlap_scheduler": True},
        "a prefill-only worker cannot run the overlap scheduler (Dynamo's TensorRT-LLM prefill examples "
        "turn it off)",
    ),
    Rule(
        lambda r: r.role.role == "prefill",
        lambda r: {"cuda_graph_config": None},
        "a prefill-only worker runs no decode steps, which are all CUDA graphs capture: null turns them "
        "off and leaves their memory to the KV cache",
    ),
    Rule(
        lambda r: r.role.role != "agg",
        lambda r: {
            "cache_transceiver_config": {
                "backend": CACHE_TRANSCEIVER_BACKEND,
                "max_tokens_in_buffer": r.max_seq_len,
            }
        },
        "prefill hands its KV blocks to decode through the cache transceiver (DEFAULT: TensorRT-LLM picks "
        "NIXL or UCX); its buffer must hold the longest prompt, so it is max_seq_len",
    ),
]


@dataclass
class RoleOptions:
    role: RoleChoice
    options: dict[str, Any]
    reasons: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def forbidden_combinations(roles: list[RoleOptions]) -> list[str]:
    """Combinations TensorRT-LLM refuses or mishandles, checked on the options as written."""
    found = []
    for r in roles:
        name, options = r.role.role, r.options
        if name == "prefill" and not options.get("disable_overlap_scheduler"):
            found.append(
                f"{options_file(name)}: a prefill-only worker must run with disable_overlap_scheduler."
            )
        graphs = (options.get("cuda_graph_config") or {}).get("batch_sizes")
        if graphs is not None and (
            len(set(graphs)) != len(graphs) or max(graphs) > options["max_batch_size"]
        ):
            found.append(
                f"{options_file(name)}: CUDA-graph batch sizes {graphs} repeat or exceed max_batch_size "
                f"{options['max_batch_size']}."
            )
        buffer = (options.get("cache_transceiver_config") or {}).get("max_tokens_in_buffer")
        if buffer is not None and buffer < options["max_seq_len"]:
            found.append(
                f"{options_file(name)}: cache_transceiver_config.max_tokens_in_buffer {buffer} is below "
                f"max_seq_len {options['max_seq_len']}: longer prompts fail to transfer."
            )
    kv = {r.role.role: (r.options.get("kv_cache_config") or {}).get("dtype") for r in roles}
    if "prefill" in kv and kv["prefill"] != kv["decode"]:
        found.append(
            f"the prefill and decode KV cache dtypes differ ({kv}); the blocks handed over must match."
        )
    return found


PLACEMENT: list[Check[tuple[RoleChoice, int]]] = [
    Check(
        lambda rg: rg[0].gpus_per_worker > rg[1] and rg[0].gpus_per_worker % rg[1] != 0,
        lambda rg: (
            f"the {rg[0].role} role's TP {rg[0].tp} x PP {rg[0].pp} = {rg[0].gpus_per_worker} GPUs spans nodes "
            f"of {rg[1]} GPUs but is not a multiple of {rg[1]}: a worker spanning nodes takes whole nodes. "
            f"Use TP x PP = {rg[1] * (rg[0].gpus_per_worker // rg[1] + 1)} (or at most {rg[1]} on one node), or "
            "set --gpus-per-node to the nodes' real count."
        ),
    ),
]


def compose_roles(
    request: DeployRequest, arch: LlamaArchitecture, kind: CheckpointKind
) -> tuple[list[RoleOptions], list[str], list[str]]:
    """(options per role, refusals, warnings) for `request` on the checkpoint `arch` / `kind` describe."""
    roles, refusals, warnings = [], [], []
    for role in request.roles:
        base: OptionsComposition = compose_options(
            role_options_request(
                role,
                arch,
                request.gpu,
                kind,
                request.kv_cache_dtype,
                request.max_seq_len,
                request.kv_fraction,
            )
        )
        extra = applied(ROLE_RULES, RoleRequest(role, request.max_seq_len))
        for values, _ in extra:
            merge_options(base.options, values)
        roles.append(RoleOptions(role, base.options, base.reasons + extra))
        refusals += [
            m for m in base.refusals + messages(PLACEMENT, (role, request.gpus_per_node)) if m not in refusals
        ]
        warnings += [m for m in base.warnings if m not in warnings]
    return roles, refusals + forbidden_combinations(roles), warnings
