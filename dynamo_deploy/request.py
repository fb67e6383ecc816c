"""What `swallow-trt deploy dynamo` is asked for: the checkpoint, the GPU, the worker roles and the graph.

Roles are `plan/deployment.py`'s `RoleChoice` rows, so a chosen deployment (`plan --slo --save`) maps onto
a request field by field (`request_from_choice`): what the plan predicted is what gets deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trt_build.build.limits import DEFAULT_MAX_SEQ_LEN, GPUS_PER_NODE
from trt_build.common.gpus import GpuProfile, get_profile
from trt_build.plan.deployment import DeploymentChoice, RoleChoice

# The runtime image of the k8s / Slurm files: Dynamo's TensorRT-LLM runtime, the release the toolkit's
# Dynamo facts were checked against (docs/upstream-2026.md §5.1).
DEFAULT_IMAGE = "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:1.6.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_PVC = "swallow-models"  # the PersistentVolumeClaim the k8s workers read the checkpoint from


@dataclass(frozen=True)
class DeployRequest:
    """A Dynamo deployment to write; `roles` is one `agg` role, or one `prefill` and one `decode` role."""

    checkpoint: Path
    output: Path
    gpu: GpuProfile
    roles: tuple[RoleChoice, ...]
    gpus_per_node: int = GPUS_PER_NODE
    router: str = "kv"  # kv | round-robin
    image: str = DEFAULT_IMAGE
    served_model_name: str | None = None  # None: the checkpoint directory's name
    kv_cache_dtype: str = "auto"
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    kv_fraction: float | None = None  # None: the LLM-API options' own rule (build/llmapi_options.py)
    host: str = "127.0.0.1"  # what local/launch.sh's frontend binds
    http_port: int = DEFAULT_HTTP_PORT
    pvc: str = DEFAULT_PVC
    choice: DeploymentChoice | None = None  # the plan's choice this request carries out, if any

    @property
    def mode(self) -> str:
        return "disagg" if any(r.role != "agg" for r in self.roles) else "agg"

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.checkpoint.resolve().name

    @property
    def total_gpus(self) -> int:
        return sum(r.gpus for r in self.roles)


def agg_roles(
    workers: int, tp: int, pp: int, max_batch_size: int, max_num_tokens: int
) -> tuple[RoleChoice, ...]:
    return (RoleChoice("agg", workers, tp, pp, max_batch_size, max_num_tokens),)


def disagg_roles(
    prefill: tuple[int, int, int], decode: tuple[int, int, int], max_batch_size: int, max_num_tokens: int
) -> tuple[RoleChoice, ...]:
    """A prefill and a decode role from (workers, tp, pp) each; both share the scheduler limits."""
    return tuple(
        RoleChoice(name, workers, tp, pp, max_batch_size, max_num_tokens)
        for name, (workers, tp, pp) in (("prefill", prefill), ("decode", decode))
    )


def request_from_choice(
    choice: DeploymentChoice, checkpoint: Path, output: Path, **graph: object
) -> DeployRequest:
    """The request that deploys a saved choice; `graph` sets what a choice does not say (router, image,
    host, ...). The quantization is the checkpoint's own (its hf_quant_config.json), not the choice's."""
    return DeployRequest(
        checkpoint=checkpoint,
        output=output,
        gpu=get_profile(choice.gpu),
        roles=choice.roles,
        kv_cache_dtype=choice.kv_cache_dtype,
        max_seq_len=choice.max_seq_len,
        kv_fraction=choice.kv_cache_free_gpu_memory_fraction,
        choice=choice,
        **graph,  # type: ignore[arg-type]
    )
