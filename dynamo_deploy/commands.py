"""The Dynamo graph every launcher starts: the commands of the frontend and of each worker, and where each
worker runs (nodes, GPUs). `local/launch.sh`, `slurm/` and `k8s/` write these, never their own copies.

Flags are `dynamo.frontend`'s and `dynamo.trtllm`'s in ai-dynamo 1.6.1 (docs/upstream-2026.md §5.5).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from trt_build.plan.deployment import RoleChoice

OPTIONS_DIR = "options"
LOOPBACK = "127.0.0.1"
# A graph on one host without etcd or NATS (docs/upstream-2026.md §5.3): discovery through files, requests
# over TCP, events over ZMQ, every address but the frontend's HTTP port on loopback. `local/launch.sh` and
# the graph `serve --dynamo` runs here both start from it.
ONE_HOST_ENV = {
    "DYN_DISCOVERY_BACKEND": "file",
    "DYN_REQUEST_PLANE": "tcp",
    "DYN_EVENT_PLANE": "zmq",
    "DYN_EVENT_PLANE_HOST": LOOPBACK,
    "DYN_TCP_RPC_HOST": LOOPBACK,
    "DYN_TCP_RESPONSE_STREAM_HOST": LOOPBACK,
    "DYN_SYSTEM_HOST": LOOPBACK,
}


def shell_words(argv: list[str]) -> str:
    """A command line for a generated script: `$NAME...` words expand (double quotes), others are literal."""
    return " ".join(f'"{word}"' if word.startswith("$") else shlex.quote(word) for word in argv)


def options_file(role: str) -> str:
    """A role's LLM-API options, relative to the deployment directory."""
    return f"{OPTIONS_DIR}/{role}.yaml"


def frontend_argv(router: str, port: str, host: str | None = None) -> list[str]:
    """The OpenAI frontend with its router; `host` None: Dynamo's default (all interfaces, for k8s / Slurm)."""
    bind = ["--http-host", host] if host else []
    return ["python3", "-m", "dynamo.frontend", *bind, "--http-port", port, "--router-mode", router]


def worker_argv(
    role: RoleChoice, model: str, served_model_name: str, options: str, router: str, gpus_per_node: int
) -> list[str]:
    """One TensorRT-LLM worker of `role`; the options YAML holds everything else (it wins over flags)."""
    argv = [
        "python3",
        "-m",
        "dynamo.trtllm",
        "--model",
        model,
        "--served-model-name",
        served_model_name,
        "--extra-engine-args",
        options,
        "--tensor-parallel-size",
        str(role.tp),
        "--pipeline-parallel-size",
        str(role.pp),
        "--disaggregation-mode",
        role.role,
    ]
    if role.gpus_per_worker > gpus_per_node:
        argv += ["--gpus-per-node", str(gpus_per_node)]
    if router == "kv" and role.role != "decode":  # the KV router places requests by prefill-side blocks
        argv.append("--publish-kv-events")
    return argv


def nodes_per_worker(role: RoleChoice, gpus_per_node: int) -> int:
    """Whole nodes one worker of `role` takes when it spans nodes, else 1."""
    return max(1, -(-role.gpus_per_worker // gpus_per_node))


@dataclass(frozen=True)
class Placement:
    """Where one worker runs: node indices of the allocation, and its GPUs (on one node: their indices)."""

    role: RoleChoice
    index: int  # 0.. within its role
    nodes: tuple[int, ...]
    gpus: tuple[int, ...]  # device indices on its node; every GPU of each node when it spans nodes

    @property
    def spans_nodes(self) -> bool:
        return len(self.nodes) > 1


def place(roles: tuple[RoleChoice, ...], gpus_per_node: int) -> list[Placement]:
    """Workers packed onto nodes in role order: one that fits a node shares it, one that does not takes
    whole nodes of its own (and MPI runs it across them)."""
    placements, node, used = [], 0, 0
    for role in roles:
        for index in range(role.workers):
            need = role.gpus_per_worker
            if need > gpus_per_node:
                node += 1 if used else 0
                count = nodes_per_worker(role, gpus_per_node)
                placements.append(
                    Placement(role, index, tuple(range(node, node + count)), tuple(range(gpus_per_node)))
                )
                node, used = node + count, 0
                continue
            if used + need > gpus_per_node:
                node, used = node + 1, 0
            placements.append(Placement(role, index, (node,), tuple(range(used, used + need))))
            used += need
    return placements


def node_count(placements: list[Placement]) -> int:
    return max(n for p in placements for n in p.nodes) + 1
