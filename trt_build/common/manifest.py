"""`manifest.json`: what made a directory (command, inputs with sha256, versions, timings, peak RSS)."""

from __future__ import annotations

import hashlib
import json
import mmap
import platform
import queue
import resource
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from trt_build import __version__

TRACKED_PACKAGES = ("torch", "transformers", "safetensors", "tensorrt_llm", "nvidia-modelopt")


class HashingStopped(Exception):
    """`sha256_file` was told to stop before the end."""


def sha256_file(path: Path, chunk_bytes: int = 16 << 20, stop: threading.Event | None = None) -> str:
    """sha256 of a file, hashed straight from its mapped pages: the page cache a reader (safetensors maps
    its files too) already holds is hashed without a copy, and multi-GB shards need no memory. Setting
    `stop` ends it between chunks (HashingStopped)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # empty, or not a regular file: read it
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
            return digest.hexdigest()
        with mapped:
            mapped.madvise(mmap.MADV_SEQUENTIAL)
            with memoryview(mapped) as view:
                for start in range(0, len(view), chunk_bytes):
                    if stop is not None and stop.is_set():
                        raise HashingStopped(path)
                    digest.update(view[start : start + chunk_bytes])
                    # unmap the pages hashed (they stay cached): mapped pages count as this process's RSS
                    mapped.madvise(mmap.MADV_DONTNEED, start, min(chunk_bytes, len(view) - start))
    return digest.hexdigest()


class BackgroundSha256:
    """sha256 of a stream of blocks on its own thread: a writer hands each block over and goes on, so hashing
    overlaps writing and reading instead of following them. At most `depth` blocks wait (each kept alive by
    its memoryview), which bounds the memory it adds."""

    def __init__(self, first: bytes = b"", depth: int = 2):
        self._digest = hashlib.sha256(first)
        self._blocks: queue.Queue[memoryview | None] = queue.Queue(maxsize=depth)
        self.seconds = 0.0  # spent hashing, on the thread
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._blocks.get()) is not None:
            started = time.perf_counter()
            self._digest.update(block)  # hashlib releases the GIL on large blocks
            self.seconds += time.perf_counter() - started
            del block

    def update(self, block: memoryview) -> None:
        """Hash `block` next; its memory must not change until it is hashed."""
        self._blocks.put(block)

    def hexdigest(self) -> str:
        """The digest of every block handed over (waits for the thread)."""
        self.stop()
        return self._digest.hexdigest()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._blocks.put(None)
            self._thread.join()


def describe_files(paths: list[Path], root: Path | None = None) -> list[dict[str, Any]]:
    """Name, size and sha256 of each file (names relative to `root` when given)."""
    return [
        {
            "name": str(path.relative_to(root)) if root else str(path),
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in paths
    ]


def package_versions() -> dict[str, str]:
    found = {"swallow-trt": __version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_manifest(directory: Path, stage: str, **fields: Any) -> Path:
    """Write `manifest.json` with the common fields plus whatever the stage adds."""
    manifest = {
        "stage": stage,
        "command": sys.argv,
        "created_unix": time.time(),
        "versions": package_versions(),
        "peak_rss_bytes": peak_rss_bytes(),
        **fields,
    }
    path = Path(directory) / "manifest.json"
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return path
