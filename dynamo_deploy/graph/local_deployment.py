"""A deployment of a small checkpoint for running here (the Dynamo tests, `make bench-dynamo`): written by
`deploy dynamo` itself (dynamo_deploy/write.py), so what runs here is what a GPU host would deploy, and read
back as the `deployment` block `serve --dynamo` reads."""

from __future__ import annotations

from pathlib import Path

from dynamo_deploy.request import DeployRequest, agg_roles, disagg_roles
from dynamo_deploy.spec import DynamoDeployment, read_deployment
from dynamo_deploy.write import deploy_dynamo
from trt_build.build.limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_NUM_TOKENS
from trt_build.common.gpus import get_profile

DEFAULT_NAME = "swallow"
LIMITS = (DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_NUM_TOKENS)


def local_deployment(
    checkpoint: Path,
    output: Path,
    workers: int = 1,
    router: str = "kv",
    mode: str = "agg",
    name: str = DEFAULT_NAME,
) -> DynamoDeployment:
    """`deploy dynamo --checkpoint CHECKPOINT --output OUTPUT` with `workers` per role (agg, or prefill and
    decode at TP 1), then the deployment as `serve --dynamo OUTPUT` reads it."""
    roles = (
        agg_roles(workers, 1, 1, *LIMITS)
        if mode == "agg"
        else disagg_roles((workers, 1, 1), (workers, 1, 1), *LIMITS)
    )
    request = DeployRequest(
        Path(checkpoint), Path(output), get_profile("h100"), roles, router=router, served_model_name=name
    )
    deploy_dynamo(request, overwrite=True)
    return read_deployment(Path(output))
