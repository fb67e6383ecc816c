"""A deployment directory for serving a checkpoint here (`make dynamo`, the Dynamo tests): only the
`deployment` block of manifest.json that `serve --dynamo` reads (dynamo_deploy/spec.py), no GPU files.
`swallow-trt deploy dynamo` writes the full directory (options YAML, launch.sh, k8s, Slurm) for GPU hosts.

    python -m dynamo_deploy.graph.local_deployment CHECKPOINT OUTPUT [--workers N] [--router kv|round-robin]
        [--mode agg|disagg] [--name SERVED_NAME]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynamo_deploy.spec import MANIFEST, MODES, ROUTERS, DynamoDeployment, WorkerRole

DEFAULT_NAME = "swallow"


def local_deployment(
    checkpoint: Path, workers: int = 1, router: str = "kv", mode: str = "agg", name: str = DEFAULT_NAME
) -> DynamoDeployment:
    """`workers` per role: agg, or prefill and decode."""
    roles = ("agg",) if mode == "agg" else ("prefill", "decode")
    return DynamoDeployment(
        checkpoint=str(Path(checkpoint).resolve()),
        served_model_name=name,
        mode=mode,
        router=router,
        roles=tuple(WorkerRole(role, workers, 1, 1, f"{role}.yaml") for role in roles),
        gpu="cpu",
        gpus_per_node=0,
        image="",
    )


def write_local_deployment(output: Path, deployment: DynamoDeployment) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    manifest = {"command": "local_deployment", "deployment": deployment.to_dict()}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--router", choices=ROUTERS, default="kv")
    parser.add_argument("--mode", choices=MODES, default="agg")
    parser.add_argument("--name", default=DEFAULT_NAME)
    args = parser.parse_args()
    deployment = local_deployment(args.checkpoint, args.workers, args.router, args.mode, args.name)
    print(f"Wrote {write_local_deployment(args.output, deployment) / MANIFEST}")


if __name__ == "__main__":
    main()
