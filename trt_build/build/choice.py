"""A deployment choice (plan/deployment.py) carried out: the LLM-API options request of each of its roles,
and what `build --target pytorch --choice` checks of the flags given beside it.

`options_request_for_role` maps the chosen `agg` role onto the options `build --choice` writes (batch,
tokens per step, TP / PP, KV dtype and share; the CUDA-graph batch sizes follow from the batch);
`deploy dynamo --choice` carries every role through `dynamo_deploy.request.request_from_choice`. Both
refuse a checkpoint quantized otherwise than the choice (`refuse_other_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trt_build.build.llmapi_options import OptionsRequest
from trt_build.common.errors import SwallowTrtError, UsageError
from trt_build.common.gpus import GpuProfile, get_profile
from trt_build.formats.kinds import CheckpointKind
from trt_build.plan.deployment import DeploymentChoice, RoleChoice
from trt_build.quant.schemes import SCHEMES
from trt_build.source.hf_config import LlamaArchitecture

CHOOSE_AGAIN = "choose again with `swallow-trt plan ... --save`"


def _quant_algo(choice: DeploymentChoice) -> str | None:
    scheme = SCHEMES.get(choice.quant)
    if scheme is None:
        raise SwallowTrtError(
            f"the deployment choice names --quant {choice.quant!r}, not one of {', '.join(SCHEMES)}.",
            f"{CHOOSE_AGAIN.capitalize()}.",
        )
    return scheme.quant_algo


def refuse_other_checkpoint(
    choice: DeploymentChoice, quant_algo: str | None, checkpoint_kv_cache_quant_algo: str | None
) -> None:
    """A checkpoint quantized otherwise than the choice was predicted for is refused: the numbers would not
    hold. `build --choice` and `deploy dynamo --choice` both ask."""
    if quant_algo != _quant_algo(choice):
        raise SwallowTrtError(
            f"the checkpoint's quant_algo is {quant_algo or 'none (bf16)'}, but the deployment choice was "
            f"predicted for --quant {choice.quant}.",
            f"Convert with `swallow-trt convert --target pytorch --quant {choice.quant}`, or "
            f"{CHOOSE_AGAIN} for this checkpoint's quantization.",
        )
    if choice.kv_cache_dtype == "auto" and checkpoint_kv_cache_quant_algo == "FP8":
        raise SwallowTrtError(
            "the checkpoint carries an FP8 KV cache, but the deployment choice was predicted with a bf16 one "
            "(--kv-cache-dtype auto).",
            "Choose again with `swallow-trt plan ... --kv-cache-dtype fp8 --save`, or convert without an FP8 KV cache.",
        )


def options_request_for_role(
    choice: DeploymentChoice, role: str, arch: LlamaArchitecture, kind: CheckpointKind
) -> OptionsRequest:
    """The options request of `role` in `choice` for a checkpoint of this shape and kind (quantization)."""
    refuse_other_checkpoint(choice, kind.quant_algo, kind.kv_cache_quant_algo)
    chosen = next((r for r in choice.roles if r.role == role), None)
    if chosen is None:
        raise SwallowTrtError(
            f"the deployment choice has no {role!r} role (it has {', '.join(r.role for r in choice.roles)}).",
            f"{CHOOSE_AGAIN.capitalize()}.",
        )
    return role_options_request(
        chosen,
        arch,
        get_profile(choice.gpu),
        kind,
        choice.kv_cache_dtype,
        choice.max_seq_len,
        choice.kv_cache_free_gpu_memory_fraction,
    )


def role_options_request(
    role: RoleChoice,
    arch: LlamaArchitecture,
    gpu: GpuProfile,
    kind: CheckpointKind,
    kv_cache_dtype: str,
    max_seq_len: int,
    kv_fraction: float | None,
) -> OptionsRequest:
    """The LLM-API options request of one worker role on a checkpoint (what every role of `build --choice`
    and `deploy dynamo` is composed from)."""
    return OptionsRequest(
        arch=arch,
        gpu=gpu,
        quant_algo=kind.quant_algo,
        checkpoint_kv_cache_quant_algo=kind.kv_cache_quant_algo,
        tp=role.tp,
        pp=role.pp,
        kv_cache_dtype=kv_cache_dtype,
        max_batch_size=role.max_batch_size,
        max_seq_len=max_seq_len,
        max_num_tokens=role.max_num_tokens,
        kv_cache_free_gpu_memory_fraction=kv_fraction,
    )


# `build` option (BuildOptions field) -> (its flag, its value in an aggregated choice)
BUILD_FLAGS: dict[str, tuple[str, Any]] = {
    "gpu_name": ("--gpu", lambda c: c.gpu),
    "tp": ("--tp", lambda c: c.role("agg").tp),
    "pp": ("--pp", lambda c: c.role("agg").pp),
    "max_batch_size": ("--max-batch-size", lambda c: c.role("agg").max_batch_size),
    "max_num_tokens": ("--max-num-tokens", lambda c: c.role("agg").max_num_tokens),
    "max_seq_len": ("--max-seq-len", lambda c: c.max_seq_len),
    "kv_cache_dtype": ("--kv-cache-dtype", lambda c: c.kv_cache_dtype),
}


def check_build_flags(choice: DeploymentChoice, path: Path, given: dict[str, Any]) -> None:
    """Refuse a disaggregated choice (Dynamo deploys those) and any flag given beside `--choice` that
    contradicts it (`given`: BuildOptions field -> the value the command line set)."""
    if choice.mode != "agg":
        raise UsageError(
            f"--choice {path} is a disaggregated deployment (prefill and decode workers); `build` writes one "
            "aggregated deployment.",
            f"Deploy it with `swallow-trt deploy dynamo --choice {path}`.",
        )
    contradictions = []
    for name, value in given.items():
        flag, chosen = BUILD_FLAGS[name][0], BUILD_FLAGS[name][1](choice)
        same = str(value).lower() == str(chosen).lower() if name == "gpu_name" else value == chosen
        if not same:
            contradictions.append(f"{flag} {value} (the choice has {chosen})")
    if contradictions:
        raise UsageError(
            f"--choice {path} contradicts {'; '.join(contradictions)}: its predictions hold only for its own "
            "settings.",
            f"Drop those flags to deploy the choice as predicted, or {CHOOSE_AGAIN} with them.",
        )
