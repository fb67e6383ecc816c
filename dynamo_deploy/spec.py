"""What a Dynamo deployment directory is: the `deployment` block of its `manifest.json`.

`swallow-trt deploy dynamo` writes it (with the files it names); `swallow-trt serve --dynamo DEPLOY` reads
it to run the same graph here. Paths of per-role files are relative to the deployment directory; the
checkpoint is an absolute path (weights are not copied, as in the pytorch target's deployment).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError

MANIFEST = "manifest.json"
MODES = ("agg", "disagg")
ROUTERS = ("kv", "round-robin")


@dataclass(frozen=True)
class WorkerRole:
    """One kind of Dynamo worker (`python -m dynamo.trtllm --disaggregation-mode ROLE`)."""

    role: str  # agg | prefill | decode
    workers: int  # processes of this role (replicas)
    tp: int
    pp: int
    options_file: str  # the LLM-API options YAML for this role, relative to the deployment directory

    @property
    def gpus_per_worker(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True)
class DynamoDeployment:
    checkpoint: str  # absolute path of the HF / ModelOpt checkpoint the workers load
    served_model_name: str  # the model name clients ask the frontend for
    mode: str  # agg | disagg
    router: str  # kv | round-robin
    roles: tuple[WorkerRole, ...]
    gpu: str  # GPU profile name
    gpus_per_node: int
    image: str  # the runtime container image of the k8s / Slurm files

    def role(self, name: str) -> WorkerRole:
        return next(r for r in self.roles if r.role == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_deployment(directory: Path) -> DynamoDeployment:
    """The deployment `swallow-trt deploy dynamo` wrote in `directory`, refusing anything else clearly."""
    fix = "Write it with `swallow-trt deploy dynamo --checkpoint CKPT --output DIR`."
    path = directory / MANIFEST
    try:
        block = json.loads(path.read_text(encoding="utf-8"))["deployment"]
        roles = tuple(WorkerRole(**role) for role in block["roles"])
        deployment = DynamoDeployment(**{**block, "roles": roles})
    except FileNotFoundError:
        raise SwallowTrtError(f"{directory} has no {MANIFEST}: it is not a Dynamo deployment.", fix) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SwallowTrtError(f"{path} is not a Dynamo deployment manifest ({error!r}).", fix) from None
    if deployment.mode not in MODES or deployment.router not in ROUTERS:
        raise SwallowTrtError(
            f"{path}: mode {deployment.mode!r} / router {deployment.router!r} unknown.", fix
        )
    return deployment
