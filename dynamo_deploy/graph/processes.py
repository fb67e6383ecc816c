"""The processes of a local Dynamo graph: one process group, a log file each, stopped together.

Every process is started in the group of the first (the broker), so SIGINT/SIGTERM/SIGKILL to the group
reach the frontend, the workers and the CPU engines the workers start. A process that exits while the graph
should run is reported by the first line of its log that says why.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ERROR_MARKERS = (" ERROR ", "Error:", "error:", "panicked")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class GraphProcess:
    name: str  # broker | frontend | <role>-worker-<i>
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self, group: int | None) -> int:
        """Start it in process group `group` (a new group when None); returns its group."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0 if group is None else group,
            )
        return os.getpgid(self.process.pid) if group is None else group

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL this process alone (its CPU engine sees its stdin close and exits)."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def failure(self) -> str:
        """Why it exited: the first line of its log that reports an error, else its last line."""
        code = self.process.poll() if self.process else None
        return f"{self.name} exited with {code}: {log_reason(read_log(self.log_path))} (log: {self.log_path})"


def log_reason(text: str) -> str:
    """The first line that reports an error (a Python traceback's exception line), else the last line."""
    lines = [ANSI.sub("", line).rstrip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("Traceback"):
            after = [x for x in lines[index + 1 :] if not x.startswith(" ")]
            return after[0] if after else line
        if any(marker in line for marker in ERROR_MARKERS):
            return line.strip()
    return lines[-1].strip() if lines else "no output"


def read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, processes: list[GraphProcess], grace_s: float = 10.0) -> None:
    """SIGINT (Dynamo's clean shutdown), then SIGTERM (the broker), then SIGKILL what is left of the group."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s / 2), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for process in processes:  # reap our children so the group can empty
                if process.process is not None:
                    process.process.poll()
            if not group_alive(pgid):
                return
            time.sleep(0.1)
