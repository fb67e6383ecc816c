"""What every output file is rendered from: the request, the options per role, where each worker runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dynamo_deploy.commands import Placement, node_count
from dynamo_deploy.request import DeployRequest
from dynamo_deploy.roles import RoleOptions
from trt_build.formats.kinds import CheckpointKind


@dataclass(frozen=True)
class Deployment:
    request: DeployRequest
    roles: list[RoleOptions]
    placements: list[Placement]
    checkpoint: Path  # resolved
    output: Path  # resolved: where the directory will be once written
    kind: CheckpointKind

    @property
    def nodes(self) -> int:
        return node_count(self.placements)
