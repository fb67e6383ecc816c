"""Find and run a real `tritonserver`, with or without a GPU.

NGC containers carry the server at /opt/tritonserver. Elsewhere the `nvidia-pytriton` wheel ships the
same binary (2.51) and the Python backend, but not laid out as the server expects: the backend
directory must hold the stub for our Python version, and the stub finds its packages through PATH
(the venv's python3) and its libpython through LD_LIBRARY_PATH. `find_tritonserver` builds that.

`TritonServer` starts it on a bind host (HTTP, gRPC and metrics; MPI leader mode when the engine has
several ranks), waits until it is ready, and stops it without leaving stub processes or Python-backend
shared memory behind. With `http_gate` (the default), its HTTP port is the gate's (http_gate.py), which
checks generate requests, answers them over tritonserver's gRPC port and passes everything else to
tritonserver's own HTTP endpoint on a loopback port; without it tritonserver binds its HTTP there directly.
Ready means proven ours: the process is alive, it holds the socket its HTTP endpoint answers on (where /proc
tells), and every model of its repository is READY in /v2/repository/index; never a health answer from
another server on the port. When it dies, the first line of the error is the log's own reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from triton_repo.launch.http_gate import HttpGate
from triton_repo.launch.ports import owns_port, url_host
from trt_build.common.errors import SwallowTrtError

NGC_ROOT = Path("/opt/tritonserver")
SHM_DIR = Path("/dev/shm")
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
DEFAULT_HOST = "127.0.0.1"
# A glog error line ("E0612 10:11:12.123456 77 model_lifecycle.cc:654] failed to load ...") or the
# server's last word ("error: creating server: ...").
LOG_ERROR = re.compile(r"^(?:E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |error: )(?P<message>.+)")
# Error lines every server on a machine without a GPU logs and survives (docs/triton.md §6.3): no reason.
HARMLESS_ERRORS = (
    "CudaDriverHelper has not been initialized",
    "CUDA driver version is insufficient",
    "Failed to initialize NVML",
    "DCGM unable to start",
)


@dataclass(frozen=True)
class TritonInstallation:
    """A tritonserver binary, the backend directory to pass it, and the environment it needs."""

    binary: Path
    backend_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    source: str = ""


def _pytriton_root() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    root = Path(pytriton.__file__).parent / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def _pytriton_backend_dir(root: Path) -> Path:
    """A backends/ directory with python/ holding symlinks to the wheel's backend and our Python's stub."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise SwallowTrtError(f"nvidia-pytriton has no Python-backend stub for Python {version} ({stub}).")
    from trt_build.source.tokenizer import cache_dir

    backends = cache_dir() / "triton-backends" / f"py{version}"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for link, target in [(name, root / "backends" / "python" / name) for name in PYTHON_BACKEND_FILES] + [
        ("triton_python_backend_stub", stub)
    ]:
        path = python_dir / link
        if path.is_symlink() and path.resolve() == target.resolve():
            continue
        path.unlink(missing_ok=True)
        path.symlink_to(target)
    return backends


def find_tritonserver() -> TritonInstallation:
    """The NGC server if present, else the one inside the nvidia-pytriton wheel."""
    system = shutil.which("tritonserver") or (
        str(NGC_ROOT / "bin" / "tritonserver") if (NGC_ROOT / "bin" / "tritonserver").is_file() else None
    )
    if system:
        return TritonInstallation(Path(system), NGC_ROOT / "backends", source="system")
    root = _pytriton_root()
    if root is None:
        raise SwallowTrtError(
            "No tritonserver found.",
            "Use the NGC container nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3 on a GPU host, or "
            "`pip install nvidia-pytriton` (installed by `make setup`) for the CPU server.",
        )
    python_bin = str(Path(sys.executable).parent)  # the stub takes site-packages from the python3 on PATH
    env = {
        "PATH": f"{python_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": os.pathsep.join(
            filter(None, [sysconfig.get_config_var("LIBDIR"), os.environ.get("LD_LIBRARY_PATH")])
        ),
    }
    return TritonInstallation(
        root / "bin" / "tritonserver", _pytriton_backend_dir(root), env, source="nvidia-pytriton"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())

    @classmethod
    def following(cls, http: int, grpc: int | None = None, metrics: int | None = None) -> Ports:
        """`http` alone implies gRPC on the next port and metrics on the one after, as Triton's defaults."""
        return cls(http, http + 1 if grpc is None else grpc, http + 2 if metrics is None else metrics)

    def named(self) -> dict[str, int]:
        return {"HTTP": self.http, "gRPC": self.grpc, "metrics": self.metrics}


def log_errors(text: str) -> list[str]:
    """The error messages of a tritonserver log, in order, each once (the first is usually the cause)."""
    found: list[str] = []
    for line in text.splitlines():
        match = LOG_ERROR.match(line.strip())
        message = match["message"].strip().strip('"').strip() if match else ""
        if message and message not in found and not any(noise in message for noise in HARMLESS_ERRORS):
            found.append(message)
    return found


# Triton loads 4 models at a time by default; a repository has 5 (each a Python stub that spends seconds
# importing transformers), so the fifth would wait for the first four.
MODEL_LOAD_THREADS = 8


def server_command(
    installation: TritonInstallation,
    repo: Path,
    ports: Ports,
    shm_prefix: str,
    world_size: int = 1,
    rank_models: tuple[str, ...] = ("tensorrt_llm",),
    exit_timeout_s: int = 15,  # the stubs of torch/transformers models take a few seconds to finalize
    mpi_singleton: bool = False,
    host: str = DEFAULT_HOST,
    gated_http_port: int | None = None,
) -> list[str]:
    """The command line, every service bound to `host`; with world_size > 1, mpirun leader mode where ranks > 0 load only `rank_models`.

    `mpi_singleton`: one server under `mpirun -n 1`, as launch_triton_server.py runs the llmapi model, so
    the LLM API can spawn its tensor/pipeline-parallel workers (MPI_Comm_spawn) from it.
    `gated_http_port`: HTTP on that loopback port instead, behind the HTTP gate (which binds `ports.http`).
    """
    http_host, http_port = (host, ports.http) if gated_http_port is None else (DEFAULT_HOST, gated_http_port)

    def rank(index: int) -> list[str]:
        args = [
            str(installation.binary),
            f"--model-repository={repo}",
            f"--backend-directory={installation.backend_dir}",
            f"--http-address={http_host}",
            f"--http-port={http_port}",
            f"--grpc-address={host}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-address={host}",
            f"--metrics-port={ports.metrics}",
            f"--exit-timeout-secs={exit_timeout_s}",
            f"--model-load-thread-count={MODEL_LOAD_THREADS}",
            "--disable-auto-complete-config",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}{index}_",
        ]
        if index > 0:
            args += ["--model-control-mode=explicit", *[f"--load-model={name}" for name in rank_models]]
        return args

    if world_size == 1:
        return ["mpirun", "--allow-run-as-root", "-n", "1", *rank(0)] if mpi_singleton else rank(0)
    command = ["mpirun", "--allow-run-as-root"]
    for index in range(world_size):
        command += (["-n", "1"] if index == 0 else [":", "-n", "1"]) + rank(index)
    return command


class TritonServer:
    """A running tritonserver; use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        repo: Path,
        ports: Ports | None = None,
        world_size: int = 1,
        log_path: Path | None = None,
        installation: TritonInstallation | None = None,
        mpi_singleton: bool = False,
        host: str = DEFAULT_HOST,
        exit_timeout_s: int = 15,
        http_gate: bool = True,
    ):
        """`exit_timeout_s`: how long a stop waits for in-flight requests and model unloading before the
        server exits anyway (tests, which need no grace, pass a short one). `http_gate`: the HTTP port is
        the gate's (generate requests checked, then answered over gRPC); False: tritonserver's own."""
        self.repo = Path(repo).resolve()
        self.exit_timeout_s = exit_timeout_s
        self.host = host
        self.ports = ports or Ports.free()
        self.world_size = world_size
        self.mpi_singleton = mpi_singleton
        self.installation = installation or find_tritonserver()
        self.shm_prefix = f"swallow{uuid.uuid4().hex[:8]}_"
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="swallow-triton-")) / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http_gate = http_gate
        self.gate: HttpGate | None = None
        self.triton_http_port = free_port() if http_gate else self.ports.http

    @property
    def http_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.http}"

    @property
    def triton_http_url(self) -> str:
        """tritonserver's own HTTP endpoint (behind the gate: loopback only)."""
        return f"http://{url_host(DEFAULT_HOST if self.http_gate else self.host)}:{self.triton_http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{url_host(self.host)}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.metrics}/metrics"

    @property
    def model_names(self) -> set[str]:
        """The models of the repository (every one must be READY; follower ranks load a subset)."""
        return {path.parent.name for path in self.repo.glob("*/config.pbtxt")}

    def command(self) -> list[str]:
        return server_command(
            self.installation,
            self.repo,
            self.ports,
            self.shm_prefix,
            self.world_size,
            exit_timeout_s=self.exit_timeout_s,
            mpi_singleton=self.mpi_singleton,
            host=self.host,
            gated_http_port=self.triton_http_port if self.http_gate else None,
        )

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        if (self.world_size > 1 or self.mpi_singleton) and shutil.which("mpirun") is None:
            raise SwallowTrtError(
                "The model runs on several GPUs:",
                "install OpenMPI (mpirun) to serve it (the NGC trtllm-python-py3 container has it).",
            )
        if self.http_gate:  # the port is taken now, before the models load; listening starts when ready
            self.gate = HttpGate(self.host, self.ports.http, self.triton_http_url, self.grpc_url).bind()
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.installation.env},
                    start_new_session=True,  # its own process group: stop() reaches the stubs too
                )
            self.wait_ready(timeout_s)
            if self.gate is not None:
                self.gate.start()
        except BaseException:
            self.stop()
            raise
        return self

    def not_ready(self) -> str | None:
        """Why this server is not ready yet (None: it is, proven ours)."""
        if self.process is None or self.process.poll() is not None:
            return "the tritonserver process is not running"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(f"{self.triton_http_url}/v2/repository/index", data=b"{}"), timeout=2
            ) as response:
                index = json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return f"nothing answers {self.triton_http_url}/v2/repository/index yet"
        single = self.world_size == 1 and not self.mpi_singleton  # mpirun's ranks may leave our group
        if single and owns_port(self.process.pid, self.triton_http_port) is False:
            return f"another process answers on port {self.triton_http_port}, not this tritonserver"
        ready = {entry.get("name") for entry in index if entry.get("state") == "READY"}
        waiting = sorted(self.model_names - ready)
        if waiting:
            return f"models not ready: {', '.join(waiting)}"
        return None

    def is_ready(self) -> bool:
        return self.not_ready() is None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise self.exit_error()
            reason = self.not_ready()
            if reason is None:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        raise SwallowTrtError(
            f"tritonserver was not ready after {timeout_s:.0f} s: {reason}.\n{self.log_tail()}"
        )

    def exit_error(self) -> SwallowTrtError:
        """The error for a server process that ended on its own: the log's reasons first, then its end."""
        assert self.process is not None
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        reasons = log_errors(text)
        why = f": {reasons[0]}" if reasons else " (its log names no error)"
        more = "".join(f"\n  {reason}" for reason in reasons[1:6])
        return SwallowTrtError(
            f"tritonserver exited with {self.process.returncode}{why}{more}\n"
            f"--- the end of {self.log_path} ---\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGINT the process group (Triton's clean shutdown), SIGKILL what remains, remove our shm files."""
        if self.process is not None and self.process.poll() is None:
            # SIGINT to the server alone: it unloads the models and ends its stubs itself (a SIGINT to
            # the whole group would interrupt the stubs mid-unload and stall shutdown until the timeout).
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5.0)
        if self.process is not None:  # stubs outlive the server only by moments; make sure none survives
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for leftover in SHM_DIR.glob(f"{self.shm_prefix}*"):
            leftover.unlink(missing_ok=True)
        if self.gate is not None:  # after the server, so answers in flight still reach their clients
            self.gate.stop()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
