"""`slurm/dynamo.sbatch`: the graph on a Slurm allocation, in the runtime image through pyxis/enroot.

The first node runs etcd, NATS and the frontend beside its workers; each worker is one `srun` step with its
own GPUs. A worker spanning nodes is one step over whole nodes, one task per GPU in one MPI world
(`--mpi=pmix` + `trtllm-llmapi-launch`, docs/upstream-2026.md §5.5). Any step ending ends the job.
"""

from __future__ import annotations

import shlex

from dynamo_deploy.commands import frontend_argv, options_file, shell_words, worker_argv
from dynamo_deploy.files.context import Deployment
from dynamo_deploy.files.k8s import resource_name

SBATCH = "slurm/dynamo.sbatch"
ETCD_PORT = 2379
NATS_PORT = 4222


def render(deployment: Deployment) -> dict[str, str]:
    request = deployment.request
    gpn = request.gpus_per_node
    frontend = shell_words(frontend_argv(request.router, "$HTTP_PORT"))
    services = (
        f"nats-server -js -p {NATS_PORT} & "
        f'etcd --listen-client-urls http://0.0.0.0:{ETCD_PORT} --advertise-client-urls "$ETCD_ENDPOINTS" '
        "--data-dir /tmp/etcd & "
        f"exec {frontend}"
    )
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={resource_name(request.model_name)}",
        f"#SBATCH --nodes={deployment.nodes}",
        f"#SBATCH --ntasks-per-node={gpn}",
        f"#SBATCH --gres=gpu:{gpn}",
        "#SBATCH --exclusive",
        "# The Dynamo graph of this deployment on Slurm (swallow-trt deploy dynamo; see ../manifest.json).",
        "# Submit from any directory: sbatch slurm/dynamo.sbatch. Needs pyxis (srun --container-image) and the",
        "# checkpoint and this directory on a filesystem every node mounts.",
        "set -euo pipefail",
        f"IMAGE=${{IMAGE:-{shlex.quote(request.image)}}}",
        f"DEPLOY=${{DEPLOY:-{shlex.quote(str(deployment.output))}}}",
        f"CHECKPOINT=${{CHECKPOINT:-{shlex.quote(str(deployment.checkpoint))}}}",
        f'HTTP_PORT="${{HTTP_PORT:-{request.http_port}}}"',
        'MOUNTS="${MOUNTS:-$CHECKPOINT:$CHECKPOINT:ro,$DEPLOY:$DEPLOY:ro}"',
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'HEAD="${NODES[0]}"',
        f'export ETCD_ENDPOINTS="http://$HEAD:{ETCD_PORT}" NATS_SERVER="nats://$HEAD:{NATS_PORT}" HTTP_PORT',
        'CONTAINER=(--container-image="$IMAGE" --container-mounts="$MOUNTS")',
        "",
        "# etcd, NATS and the frontend on the first node",
        f'srun --overlap --nodes=1 --ntasks=1 --nodelist="$HEAD" "${{CONTAINER[@]}}" bash -c {shlex.quote(services)} &',
        f'etcd_up() {{ (exec 3<>"/dev/tcp/$HEAD/{ETCD_PORT}") 2>/dev/null; }}',
        "for _ in $(seq 150); do etcd_up && break; sleep 2; done",
        'etcd_up || { echo "etcd on $HEAD did not start within 5 minutes" >&2; scancel "$SLURM_JOB_ID"; exit 1; }',
    ]
    for placement in deployment.placements:
        role = placement.role
        argv = worker_argv(
            role, "$CHECKPOINT", request.model_name, f"$DEPLOY/{options_file(role.role)}", request.router, gpn
        )
        nodes = ",".join(f"${{NODES[{n}]}}" for n in placement.nodes)
        where = (
            f"nodes {placement.nodes[0]}-{placement.nodes[-1]}"
            if placement.spans_nodes
            else f"node {placement.nodes[0]}"
        )
        lines.append(f"# {role.role} worker {placement.index}: TP {role.tp} x PP {role.pp} on {where}")
        if placement.spans_nodes:
            lines.append(
                f'srun --nodes={len(placement.nodes)} --ntasks-per-node={gpn} --nodelist="{nodes}" --gres=gpu:{gpn} '
                f'--mpi=pmix "${{CONTAINER[@]}}" trtllm-llmapi-launch {shell_words(argv)} &'
            )
        else:
            lines.append(
                f'srun --nodes=1 --ntasks=1 --nodelist="{nodes}" --gres=gpu:{len(placement.gpus)} --exact '
                f'"${{CONTAINER[@]}}" {shell_words(argv)} &'
            )
    lines += [
        "",
        'echo "Dynamo frontend: http://$HEAD:$HTTP_PORT/v1" >&2',
        "status=0",
        "wait -n || status=$?",
        'echo "a step of the graph exited (status $status); ending the job." >&2',
        'scancel "$SLURM_JOB_ID"',
        'exit "$status"',
        "",
    ]
    return {SBATCH: "\n".join(lines)}
