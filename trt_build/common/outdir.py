"""Output directories that appear whole or not at all.

Every stage writes into a hidden temporary directory beside its output and renames it into place
only when it is complete. Ctrl-C, SIGTERM, a full disk or any error removes the partial directory,
so nothing that looks finished is ever left half-written.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    if final.exists() and not overwrite:
        raise SwallowTrtError(f"{final} already exists.", "Pass --overwrite to replace it.")


@contextmanager
def atomic_output_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final` when the block completes without error."""
    final = Path(final)
    refuse_existing(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
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
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
