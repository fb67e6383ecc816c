"""`manifest.json`: what made a directory (command, inputs with sha256, versions, timings, peak RSS)."""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from trt_build import __version__

TRACKED_PACKAGES = ("torch", "transformers", "safetensors", "tensorrt_llm", "nvidia-modelopt")


def sha256_file(path: Path, chunk_bytes: int = 16 << 20) -> str:
    """sha256 of a file read in chunks, so multi-GB shards need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


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
