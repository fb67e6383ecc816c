"""A Dynamo deployment run here as a real graph: loopback broker, `python -m dynamo.frontend` with the
deployment's router, and its workers, the CPU reference engine (`worker.py`) or Dynamo's mocker.

Readiness is proven, not assumed: the frontend answers 404 until a worker registers the model, so the graph
is ready once `/v1/models` lists the served name and every worker's system port answers `/health`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dynamo_deploy.commands import LOOPBACK
from dynamo_deploy.graph.environment import GRAPH_DIR, ROOT, dynamo_python, graph_environment, process_ports
from dynamo_deploy.graph.processes import GraphProcess, stop_group
from dynamo_deploy.spec import DynamoDeployment
from triton_repo.launch.ports import check_ports_free, url_host
from triton_repo.launch.tritonserver import free_port
from trt_build.common.errors import SwallowTrtError

ENGINES = ("cpu", "mocker")
# A request whose worker dies (mid-stream, or before it is known to be gone: file discovery keeps a killed
# worker listed for a while) is retried on another worker up to this many times (Dynamo's migration).
MIGRATION_LIMIT = 3
MOCKER_SPEEDUP = 10.0  # the mocker's --speedup-ratio (as Dynamo's examples run it)


@dataclass(frozen=True)
class GraphOptions:
    engine: str = "cpu"  # cpu: the reference engine on the checkpoint | mocker: dynamo.mocker
    host: str = LOOPBACK  # what the frontend's HTTP port binds; everything else is 127.0.0.1
    http_port: int = 8000
    run_dir: Path | None = None  # logs, discovery and HOME [a temporary directory, kept for its logs]
    timeout_s: float = 300.0
    mocker_trace: Path | None = None  # --response-replay-trace-path for the mockers


def worker_roles(deployment: DynamoDeployment, engine: str) -> list[tuple[str, int]]:
    """(role, index) of every worker; the CPU engine serves aggregated roles only."""
    if engine == "cpu" and deployment.mode != "agg":
        raise SwallowTrtError(
            f"The CPU engine cannot split prefill and decode (deployment mode {deployment.mode}).",
            "Run a disaggregated deployment here with --engine mocker, or write an agg one "
            "(`swallow-trt deploy dynamo --mode agg`).",
        )
    return [(role.role, index) for role in deployment.roles for index in range(role.workers)]


class DynamoGraph:
    def __init__(self, deployment: DynamoDeployment, options: GraphOptions):
        if options.engine not in ENGINES:
            raise SwallowTrtError(
                f"--engine {options.engine!r} is unknown.", f"Use one of {', '.join(ENGINES)}."
            )
        self.deployment, self.options = deployment, options
        self.python = str(dynamo_python())
        self.roles = worker_roles(deployment, options.engine)
        checkpoint = Path(deployment.checkpoint)
        if not (checkpoint / "config.json").is_file():
            raise SwallowTrtError(
                f"The deployment's checkpoint {checkpoint} has no config.json.",
                "Point the deployment at a Hugging Face checkpoint directory (config, tokenizer, safetensors).",
            )
        # absolute: HOME and the discovery directory must not depend on each process's working directory
        self.run_dir = (options.run_dir or Path(tempfile.mkdtemp(prefix="swallow-trt-dynamo-"))).resolve()
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        broker_ports = (free_port(), free_port())  # XSUB, XPUB
        self.env = graph_environment(self.run_dir, *broker_ports)
        self.broker = self.process("broker", [str(GRAPH_DIR / "broker.py"), *map(str, broker_ports)])
        self.frontend = self.process("frontend", ["-m", "dynamo.frontend", *self.frontend_args()])
        self.workers = [self.process(f"{role}-worker-{i}", self.worker_args(role)) for role, i in self.roles]
        self.pgid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{url_host(self.options.host)}:{self.options.http_port}"

    @property
    def processes(self) -> list[GraphProcess]:
        return [self.broker, self.frontend, *self.workers]

    def process(self, name: str, args: list[str]) -> GraphProcess:
        return GraphProcess(
            name, [self.python, *args], {**self.env, **process_ports()}, self.run_dir / "logs" / f"{name}.log"
        )

    def frontend_args(self) -> list[str]:
        args = ["--http-host", self.options.host, "--http-port", str(self.options.http_port)]
        args += ["--router-mode", self.deployment.router, "--migration-limit", str(MIGRATION_LIMIT)]
        if self.deployment.router == "kv" and self.options.engine == "cpu":
            args.append("--no-kv-events")  # the CPU engine publishes no KV events: the router predicts
        return args

    def worker_args(self, role: str) -> list[str]:
        model = [
            "--model-path",
            self.deployment.checkpoint,
            "--model-name",
            self.deployment.served_model_name,
        ]
        if self.options.engine == "cpu":
            return [
                str(GRAPH_DIR / "worker.py"),
                *model,
                "--engine-python",
                engine_python(),
                "--repo",
                str(ROOT),
            ]
        args = [
            "-m",
            "dynamo.mocker",
            *model,
            "--engine-type",
            "trtllm",
            "--speedup-ratio",
            str(MOCKER_SPEEDUP),
        ]
        if role != "agg":
            args += ["--disaggregation-mode", role]
        if self.options.mocker_trace is not None:
            args += ["--response-replay-trace-path", str(self.options.mocker_trace)]
        return args

    # ---- running
    def start(self) -> DynamoGraph:
        check_ports_free(self.options.host, {"Dynamo frontend HTTP": self.options.http_port})
        try:
            self.pgid = self.broker.start(None)
            for process in [self.frontend, *self.workers]:
                process.start(self.pgid)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def check_running(self) -> None:
        for process in self.processes:
            if not process.running:
                raise SwallowTrtError(
                    f"The Dynamo graph stopped: {process.failure()}.",
                    f"The logs are in {self.run_dir / 'logs'}.",
                )

    def wait_until(self, done, check, late: str) -> None:
        """Poll `done` every half second; `check` raises when something died; `late` says what timed out."""
        deadline = time.monotonic() + self.options.timeout_s
        while not done():
            check()
            if time.monotonic() > deadline:
                raise SwallowTrtError(
                    f"{late} after {self.options.timeout_s:.0f} s.",
                    f"Read the logs in {self.run_dir / 'logs'}, or allow longer with --timeout.",
                )
            time.sleep(0.5)

    def wait_ready(self) -> None:
        self.wait_until(
            self.ready,
            self.check_running,
            f"The Dynamo graph was not ready (the frontend does not list {self.deployment.served_model_name!r}, "
            "or a worker is unhealthy)",
        )

    def ready(self) -> bool:
        return self.model_listed() and all(self.worker_healthy(w) for w in self.workers if w.running)

    def model_listed(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/models", timeout=5) as response:
                listed = json.loads(response.read())
        except (OSError, ValueError):
            return False  # 404 / refused: no worker registered yet
        return any(m.get("id") == self.deployment.served_model_name for m in listed.get("data", ()))

    @staticmethod
    def worker_healthy(worker: GraphProcess) -> bool:
        port = worker.env["DYN_SYSTEM_PORT"]
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=5) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False

    def kill_worker(self, index: int) -> None:
        self.workers[index].kill()

    def restart_worker(self, index: int) -> None:
        """Start worker `index` again (after `kill_worker`) and wait until it is healthy."""
        worker = self.workers[index]
        worker.kill()
        assert self.pgid is not None
        worker.start(self.pgid)

        def still_running() -> None:
            if not worker.running:
                raise SwallowTrtError(f"The restarted worker stopped: {worker.failure()}.")

        self.wait_until(
            lambda: self.worker_healthy(worker),
            still_running,
            f"{worker.name} was not healthy after a restart",
        )

    def stop(self) -> None:
        if self.pgid is not None:
            stop_group(self.pgid, self.processes)
            self.pgid = None

    def __enter__(self) -> DynamoGraph:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def engine_python() -> str:
    """The toolkit's interpreter (torch, the reference engine): the one running this code."""
    return sys.executable
