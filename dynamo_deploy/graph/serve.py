"""`swallow-trt serve --dynamo DEPLOY`: the deployment until Ctrl-C or SIGTERM.

Where TensorRT-LLM is installed (a GPU host) it runs DEPLOY/local/launch.sh, which `deploy dynamo` wrote
(frontend + `python -m dynamo.trtllm` workers). Elsewhere it runs the same graph for real with CPU workers
(`graph.py`): the reference engine on the checkpoint, or Dynamo's mocker (`--engine mocker`).
Every process started is stopped on the way out, whatever ends the run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
from pathlib import Path

from dynamo_deploy.graph.graph import ENGINES, DynamoGraph, GraphOptions
from dynamo_deploy.graph.processes import stop_group
from dynamo_deploy.spec import read_deployment
from trt_build.common.console import say
from trt_build.common.errors import SwallowTrtError
from trt_build.common.targets import installed_tensorrt_llm_version

AUTO, TRTLLM = "auto", "trtllm"
SERVE_ENGINES = (AUTO, TRTLLM, *ENGINES)
LAUNCH_SCRIPT = Path("local") / "launch.sh"


def chosen_engine(engine: str) -> str:
    """auto: TensorRT-LLM's workers where it is installed, else the CPU reference engine."""
    if engine != AUTO:
        return engine
    return TRTLLM if installed_tensorrt_llm_version() else "cpu"


def until_stopped(poll) -> None:
    """Call `poll` every second until Ctrl-C or SIGTERM; `poll` raises when something died. SIGINT is
    handled here too, since a shell starts background jobs with it ignored (`make dynamo &`)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set():
            poll()
            stop.wait(1.0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_launch_script(deploy: Path, http_port: int) -> None:
    script = deploy / LAUNCH_SCRIPT
    if not script.is_file():
        raise SwallowTrtError(
            f"{deploy} has no {LAUNCH_SCRIPT}.",
            "Write the deployment again with `swallow-trt deploy dynamo`.",
        )
    say(f"$ bash {script}  (HTTP_PORT={http_port}; Ctrl-C stops it)")
    process = subprocess.Popen(
        ["bash", str(script)], env={**os.environ, "HTTP_PORT": str(http_port)}, process_group=0
    )

    def poll() -> None:
        if process.poll() is not None:
            raise SwallowTrtError(f"{script} exited with {process.returncode} (its output is above).")

    try:
        until_stopped(poll)
    except KeyboardInterrupt:
        pass  # Ctrl-C before until_stopped's handler was in place: the same stop
    finally:
        stop_group(process.pid, [])
        process.poll()
    say("Stopped.")


def serve_dynamo(deploy: Path, engine: str, options: GraphOptions) -> None:
    deployment = read_deployment(deploy)
    engine = chosen_engine(engine)
    if engine == TRTLLM:
        run_launch_script(deploy, options.http_port)
        return
    graph = DynamoGraph(deployment, dataclasses.replace(options, engine=engine))
    workers = ", ".join(w.name for w in graph.workers)
    say(f"Starting a Dynamo graph ({engine} engine, router {deployment.router}): frontend, {workers}...")
    try:
        graph.start()
        say(
            f"Ready.\nOpenAI   {graph.url}/v1  (model {deployment.served_model_name}: /chat/completions, "
            f"/completions)\nlogs     {graph.run_dir / 'logs'}\nPress Ctrl-C to stop."
        )
        until_stopped(graph.check_running)
    except KeyboardInterrupt:
        pass  # Ctrl-C while starting, or before until_stopped's handler was in place: the same stop
    finally:
        say("Stopping the Dynamo graph...")
        graph.stop()
    say("Stopped.")
