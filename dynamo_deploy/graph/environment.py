"""Where the Dynamo venv is, and the environment every process of a local graph runs with.

Dynamo runs here without etcd or NATS (docs/upstream-2026.md §5.6): file discovery in a private directory,
the TCP request plane, the ZMQ event plane through a loopback broker, every address pinned to 127.0.0.1,
and a private HOME (the frontend caches model cards under $HOME/.cache/dynamo) with the hub offline.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from dynamo_deploy.commands import LOOPBACK, ONE_HOST_ENV
from triton_repo.launch.ports import port_problem
from triton_repo.launch.tritonserver import free_port
from trt_build.common.errors import SwallowTrtError

ROOT = Path(__file__).resolve().parents[2]  # the source root: engine_process runs from it
GRAPH_DIR = Path(__file__).resolve().parent
DYNAMO_VENV_ENV = "SWALLOW_TRT_DYNAMO_VENV"
SYSTEM_PORT_LIMIT = 32768  # DYN_SYSTEM_PORT is parsed as an i16


def dynamo_python() -> Path:
    """The Dynamo venv's interpreter ($SWALLOW_TRT_DYNAMO_VENV, else .venv-dynamo in the source root)."""
    venv = Path(os.environ.get(DYNAMO_VENV_ENV) or ROOT / ".venv-dynamo")
    python = venv / "bin" / "python"
    if not python.is_file():
        raise SwallowTrtError(
            f"No Dynamo environment at {venv} (ai-dynamo lives in its own venv).",
            f"Build it with `make dynamo-env` in {ROOT}, or point {DYNAMO_VENV_ENV} at a venv with ai-dynamo==1.6.1.",
        )
    return python


def graph_environment(run_dir: Path, xsub_port: int, xpub_port: int) -> dict[str, str]:
    """What every process of the graph shares (the per-process ports come on top: `process_ports`)."""
    home = run_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("DYN_", "PYTEST_"))}
    return {
        **kept,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(home / ".cache" / "huggingface"),
        "NO_COLOR": "1",  # plain logs, so the failure reason reads cleanly
        "PYTHONPATH": "",  # the Dynamo venv must not see the toolkit's packages, nor the reverse
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # ai-dynamo's pytest plugins skip test_triton_* files
        **ONE_HOST_ENV,
        "DYN_FILE_KV": str(run_dir / "discovery"),
        "DYN_ZMQ_BROKER_URL": f"xsub=tcp://{LOOPBACK}:{xsub_port} , xpub=tcp://{LOOPBACK}:{xpub_port}",
        # a worker's /health says "ready" once its generate endpoint serves (else it stays "notready")
        "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS": '["generate"]',
    }


def process_ports() -> dict[str, str]:
    """The ports one Dynamo process binds (each process its own). Dynamo reads DYN_SYSTEM_PORT as an i16:
    a port above 32767 (any ephemeral one) stops the process, so it comes from below that."""
    return {
        "DYN_TCP_RPC_PORT": str(free_port()),
        "DYN_SYSTEM_PORT": str(free_port_below(SYSTEM_PORT_LIMIT)),
        "DYN_TCP_RESPONSE_STREAM_PORT": str(free_port()),
    }


def free_port_below(limit: int, start: int = 20000) -> int:
    """A port free on 127.0.0.1 in [start, limit), tried from a random point (parallel graphs differ)."""
    span = limit - start
    first = random.randrange(span)
    for step in range(span):
        port = start + (first + step) % span
        if port_problem(LOOPBACK, port) is None:
            return port
    raise SwallowTrtError(
        f"No free port on {LOOPBACK} in {start}-{limit - 1}.", "Stop some servers and try again."
    )
