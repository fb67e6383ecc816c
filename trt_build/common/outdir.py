"""Output directories that appear whole or not at all.

Every stage writes into a hidden temporary directory beside its output and renames it into place
only when it is complete. Ctrl-C, SIGTERM, a full disk or any error removes the partial directory,
so nothing that looks finished is ever left half-written. `check_output` refuses, before any work, an
output that exists (without --overwrite), that overlaps a directory the stage reads (replacing it would
delete the source), or that cannot be written. A run killed by SIGKILL or a power cut cannot clean up:
its `.NAME.partial-PID-*` (or `.NAME.old-PID`) is removed by the next run once process PID is gone.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trt_build.common.console import say
from trt_build.common.errors import SwallowTrtError


class Terminated(Exception):
    """Raised in the main thread when the process receives SIGTERM, so cleanup code runs."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interruption_explained(final: Path) -> Iterator[None]:
    """Around a command's atomic write: Ctrl-C or SIGTERM ends with one clear line, not a traceback."""
    try:
        yield
    except (KeyboardInterrupt, Terminated) as error:
        raise SwallowTrtError(
            f"{str(error) or 'interrupted'}: the partial output was removed; {final} was not written."
        ) from None


def refuse_existing(final: Path, overwrite: bool) -> None:
    """Fail before any work when the output exists and may not be replaced."""
    if os.path.lexists(final) and not overwrite:
        raise SwallowTrtError(f"{final} already exists.", "Pass --overwrite to replace it.")


def refuse_overlap(final: Path, sources: Iterable[Path]) -> None:
    """Fail when the output is a source, lies inside one, or holds one (paths resolved, symlinks followed):
    --overwrite would delete the source, and a source's reader would see the output's files."""
    output = Path(final).resolve()
    for source in sources:
        resolved = Path(source).resolve()
        if output == resolved:
            relation = "is"
        elif output.is_relative_to(resolved):
            relation = "lies inside"
        elif resolved.is_relative_to(output):
            relation = "holds"
        else:
            continue
        raise SwallowTrtError(
            f"the output {final} {relation} the input {source}: writing it could delete or mix up what it reads.",
            "Choose an output directory outside the input (and the input outside the output).",
        )


def refuse_unwritable(final: Path) -> None:
    """Fail when the output cannot be created: its nearest existing parent is not a writable directory."""
    parent = Path(final).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SwallowTrtError(f"cannot write {final}: {parent} is not a directory.", "Choose another output.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SwallowTrtError(
            f"cannot write {final}: {parent} is not writable by this user.",
            "Choose another output directory, or make that one writable.",
        )


def check_output(final: Path, overwrite: bool, sources: Iterable[Path] = ()) -> None:
    """Everything about an output that can be refused before any work (see the module docstring)."""
    final = Path(final)
    refuse_existing(final, overwrite)
    refuse_overlap(final, sources)
    refuse_unwritable(final)


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _size(path: Path) -> str:
    """The bytes under `path` (a file or symlink: its own), for a report; files may vanish meanwhile."""
    try:
        if not path.is_dir() or path.is_symlink():
            total = path.lstat().st_size
        else:
            total = sum(item.lstat().st_size for item in path.rglob("*"))
    except OSError:
        return "size unknown"
    return f"{total / 1e9:.2f} GB" if total >= 1e9 else f"{total / 1e6:.1f} MB"


def clear_stale(final: Path) -> None:
    """Remove the leftovers of killed runs for `final` (`.NAME.partial-PID-*`, `.NAME.old-PID`) whose process
    is gone; report (with their size) those of a live process, or of an unknown one (older names carry no PID).
    PIDs are this host's: a run on another host writing to a shared disk must not share an output name."""
    final = Path(final)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(?:partial|old)-(?:(\d+)(?:-.*)?|.*)")
    if not final.parent.is_dir():
        return
    for path in sorted(final.parent.iterdir()):
        found = pattern.fullmatch(path.name)
        if found is None:
            continue
        pid = int(found.group(1)) if found.group(1) else None
        size = _size(path)
        if pid is not None and pid != os.getpid() and not _owner_alive(pid):
            _remove(path)
            say(f"removed {path} ({size}), left by process {pid}, which has ended", err=True)
        elif pid != os.getpid():
            owner = f"running process {pid}" if pid is not None else "an unknown process"
            say(
                f"Warning: {path} ({size}) belongs to {owner}; remove it if no run is writing {final}",
                err=True,
            )


def _remove(path: Path) -> None:
    """A directory tree, or a file or symlink (never what a symlink points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output_dir(final: Path, overwrite: bool = False, sources: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final` when the block completes without error; `sources` are
    the directories the stage reads, which the output must not overlap."""
    final = Path(final)
    check_output(final, overwrite, sources)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the output should read like any other directory
    try:
        with _sigterm_raises():
            yield tmp
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno == errno.ENOSPC:
            free_gb = shutil.disk_usage(final.parent).free / 1e9
            raise SwallowTrtError(
                f"The disk holding {final.parent} is full ({free_gb:.1f} GB free). Nothing was written;",
                "free some space or choose another --output, then run again.",
            ) from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.lexists(final):
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)
