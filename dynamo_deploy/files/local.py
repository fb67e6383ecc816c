"""`local/launch.sh`: the whole graph on one GPU host, without etcd or NATS.

The frontend binds the request's host (127.0.0.1 unless told); every worker gets its own GPUs through
CUDA_VISIBLE_DEVICES; discovery goes through a private directory and requests over TCP on loopback
(docs/upstream-2026.md §5.3). Ctrl-C or SIGTERM stops every process the script started (each runs in its
own process group, so a worker's MPI ranks stop with it); so does any one of them exiting, so a half graph
is never left serving.
"""

from __future__ import annotations

import shlex

from dynamo_deploy.commands import ONE_HOST_ENV, frontend_argv, options_file, shell_words, worker_argv
from dynamo_deploy.files.context import Deployment

LAUNCH = "local/launch.sh"


def _header() -> list[str]:
    return [
        "#!/usr/bin/env bash",
        "# The Dynamo graph of this deployment on one GPU host (swallow-trt deploy dynamo; see ../manifest.json).",
        "# Needs Dynamo with its TensorRT-LLM extra (the runtime image). Ctrl-C stops every process it started.",
        "# Discovery and requests stay on 127.0.0.1; KV events use ZMQ's direct mode, whose worker ports bind all",
        "# interfaces (docs/upstream-2026.md §5.3 in swallow-trt).",
        "set -euo pipefail",
        "",
    ]


def _refusal(deployment: Deployment) -> str:
    message = (
        f"this deployment needs {deployment.request.total_gpus} GPUs on {deployment.nodes} nodes of "
        f"{deployment.request.gpus_per_node}; run it with ../slurm/ or ../k8s/ instead."
    )
    return "\n".join([*_header(), f"echo {shlex.quote(message)} >&2", "exit 2", ""])


def render(deployment: Deployment) -> dict[str, str]:
    request = deployment.request
    if deployment.nodes > 1:
        return {LAUNCH: _refusal(deployment)}
    needed = request.total_gpus
    lines = _header() + [
        'DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"',
        f"CHECKPOINT=${{CHECKPOINT:-{shlex.quote(str(deployment.checkpoint))}}}",
        f'HOST="${{HOST:-{request.host}}}"',
        f'HTTP_PORT="${{HTTP_PORT:-{request.http_port}}}"',
        "",
        f"needed={needed}",
        'found=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)',
        "if (( found < needed )); then",
        '  echo "this graph needs $needed GPUs on this host; nvidia-smi lists $found. Use ../slurm/ or ../k8s/," '
        '"or deploy fewer workers." >&2',
        "  exit 2",
        "fi",
        "",
        'RUN="$(mktemp -d)"',
        *(f"export {key}={value}" for key, value in ONE_HOST_ENV.items()),
        'export DYN_FILE_KV="$RUN/discovery"',
        "",
        "# job control: every process gets its own process group, so Ctrl-C reaches only this script, which",
        "# then stops each group (a TP/PP worker's MPI ranks included): SIGINT, then SIGKILL after 30 s",
        "set -m",
        "pids=()",
        "stop() {",
        "  trap - INT TERM EXIT",
        "  local pid alive",
        '  for pid in "${pids[@]+"${pids[@]}"}"; do kill -INT -- "-$pid" 2>/dev/null || true; done',
        "  for _ in $(seq 30); do",
        "    alive=0",
        '    for pid in "${pids[@]+"${pids[@]}"}"; do kill -0 "$pid" 2>/dev/null && alive=1; done',
        "    (( alive )) || break",
        "    sleep 1",
        "  done",
        '  for pid in "${pids[@]+"${pids[@]}"}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done',
        '  rm -rf "$RUN"',
        "}",
        "trap 'stop; exit 130' INT",
        "trap 'stop; exit 143' TERM",
        "trap stop EXIT",
        "",
        f"{shell_words(frontend_argv(request.router, '$HTTP_PORT', '$HOST'))} &",
        "pids+=($!)",
    ]
    for placement in deployment.placements:
        role = placement.role
        argv = worker_argv(
            role,
            "$CHECKPOINT",
            request.model_name,
            f"$DEPLOY/{options_file(role.role)}",
            request.router,
            request.gpus_per_node,
        )
        devices = ",".join(str(g) for g in placement.gpus)
        lines += [
            f"# {role.role} worker {placement.index}: TP {role.tp} x PP {role.pp} on GPU(s) {devices}",
            f"CUDA_VISIBLE_DEVICES={devices} {shell_words(argv)} &",
            "pids+=($!)",
        ]
    lines += [
        "",
        f'echo "Dynamo frontend: http://$HOST:$HTTP_PORT/v1 (model {request.model_name}); Ctrl-C stops the graph." >&2',
        "status=0",
        "wait -n || status=$?",
        'echo "a process of the graph exited (status $status); stopping the others." >&2',
        'exit "$status"',
        "",
    ]
    return {LAUNCH: "\n".join(lines)}
