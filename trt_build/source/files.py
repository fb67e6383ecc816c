"""The files of a Hugging Face source and their sha256, without importing torch.

`convert` lists the source files and starts hashing them first, so that the hash runs while the rest of the
converter (torch: 2-3 s) is imported. Every file named by an index must lie inside the model directory
(`file_inside`); pickle checkpoints (*.bin, *.pt, ...) are refused: loading one can execute code.
`SourceHasher` records the sha256 of the source files on a thread beside the conversion, reusing a digest
that `swallow-trt fetch` or the Hugging Face cache already knows.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import read_json_object
from trt_build.common.manifest import HashingStopped, sha256_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def safetensors_files(model_dir: Path) -> list[Path]:
    """The model's safetensors files: those its index names (each inside the directory), else all of them;
    a directory of pickles only is refused, since loading one can execute code."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = _index_files(model_dir, index)
        missing = [path.name for path in files if not path.is_file()]
        if missing:
            raise SwallowTrtError(
                f"{index.name} lists {', '.join(missing)}, which are not in {model_dir}; "
                "the download is incomplete.",
                "Download the missing shards and run again.",
            )
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise SwallowTrtError(
            f"{model_dir} holds only pickle checkpoints ({', '.join(pickles[:3])}). Loading a pickle "
            "can execute arbitrary code, so swallow-trt reads only safetensors.",
            "Download the *.safetensors files of the model (huggingface-cli download REPO --include "
            "'*.safetensors' '*.json'), or convert the pickle yourself in a sandbox you trust.",
        )
    raise SwallowTrtError(f"no *.safetensors files in {model_dir}.")


def _index_files(model_dir: Path, index: Path) -> list[Path]:
    """The files the index's weight_map names, each inside the model directory (`file_inside`)."""
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise SwallowTrtError(
            f"{index} has no weight_map object (tensor name -> file).", "Download the index again."
        )
    files = set()
    for tensor, name in weight_map.items():
        path = file_inside(model_dir, name)
        if path is None:
            raise SwallowTrtError(
                f"{index} maps tensor {tensor!r} to {name!r}, which is not a file inside {model_dir}; "
                "an index may name only files of its own model directory.",
                "The index is damaged or hostile: download the model again from a source you trust.",
            )
        files.add(path)
    return sorted(files)


def file_inside(directory: Path, name: object) -> Path | None:
    """`directory / name` when `name` (from an index or a manifest) names a file inside `directory`, else None.

    The name is checked lexically (a relative string, no `..`, no NUL) and its parent directory must resolve
    inside `directory`, so a hostile index cannot make convert read `/etc/passwd` or `../../elsewhere`. The
    file itself may be a symlink to anywhere: a Hugging Face snapshot is a directory of symlinks into the
    cache's `blobs/`, and that is how real models arrive.
    """
    if not isinstance(name, str) or "\x00" in name:
        return None
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None
    path = Path(directory) / relative
    return path if path.parent.resolve().is_relative_to(Path(directory).resolve()) else None


def _recorded_sha256(model_dir: Path) -> dict[str, dict[str, Any]]:
    """Files whose sha256 `swallow-trt fetch` recorded from the hub (LFS metadata), by name."""
    manifest = model_dir / "manifest.json"
    if not manifest.is_file():
        return {}
    recorded = json.loads(manifest.read_text())
    if recorded.get("stage") != "fetch":
        return {}
    return {entry["name"]: entry for entry in recorded.get("files", []) if entry.get("sha256")}


class SourceHasher(threading.Thread):
    """sha256 of each source file, on a thread beside the conversion. Hashing 140 GB takes minutes,
    so a digest is reused when it is already known: from the fetch manifest (same size), or from the
    name of a Hugging Face cache blob. Otherwise each file is hashed once from its mapped pages
    (`sha256_file`): the same page cache the conversion's safetensors mapping reads, so while the model
    fits in memory each byte comes from disk once and is never copied for hashing."""

    def __init__(self, files: list[Path], root: Path, compute: bool = True):
        super().__init__(name="convert-source-sha256", daemon=True)
        self.files, self.root, self.compute = files, root, compute
        self.results: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        try:
            recorded = _recorded_sha256(self.root)
            for path in self.files:
                if self.stop.is_set():
                    return
                self.results.append(self._describe(path, recorded))
        except HashingStopped:
            return
        except BaseException as error:  # re-raised by result() in the caller's thread
            self.error = error
        finally:
            self.seconds = time.perf_counter() - started

    def _describe(self, path: Path, recorded: dict[str, dict[str, Any]]) -> dict[str, Any]:
        name, size = str(path.relative_to(self.root)), path.stat().st_size
        entry, target = recorded.get(name), path.resolve()
        if entry and entry.get("bytes") == size:
            digest, origin = entry["sha256"], "fetch manifest"
        elif (
            path.is_symlink() and target.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", target.name)
        ):
            digest, origin = target.name, "hf cache blob name"
        elif self.compute:
            digest, origin = sha256_file(path, stop=self.stop), "computed"
        else:
            digest, origin = None, "not computed (--no-sha256)"
        return {"name": name, "bytes": size, "sha256": digest, "sha256_from": origin}

    def result(self) -> list[dict[str, Any]]:
        self.join()
        if self.error is not None:
            raise self.error
        return sorted(self.results, key=lambda entry: entry["name"])
