"""Reading the Hugging Face source of `swallow-trt convert`: lazily, safely, and hashed once.

A 70B source is 140 GB, so nothing here loads a whole model: `SourceCheckpoint` reads only the header
of each safetensors file up front (names, shapes, dtypes, checked against config.json) and then the
slices a rank asks for, in the checkpoint dtype through `checked_cast`, which refuses a value that
becomes inf/NaN in a cast (bf16 -> float16 beyond 65504, or already inf/NaN); convert (both targets) and
calibration read only through it. Pickle checkpoints (*.bin, *.pt, ...) are refused: loading one can
execute code. Every file it opens is named inside the model directory (`_index_files`), and every tensor it
reads is stored in config.json's dtype (`validate`).
`SourceHasher` records the sha256 of the source files on a thread beside the conversion, reusing a
digest that `swallow-trt fetch` or the Hugging Face cache already knows.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from tqdm import tqdm

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import read_json_object
from trt_build.common.manifest import sha256_file
from trt_build.formats.safetensors_stream import DTYPE_NAMES, opened_safetensors
from trt_build.parallel.weight_map import SourceSlice
from trt_build.source.hf_config import LlamaArchitecture, hf_tensor_shapes

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# The dtypes a checkpoint may be written in (config.json `dtype` / `torch_dtype`).
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


# --- reading the source lazily ---------------------------------------------------------------------


class SourceCheckpoint:
    """The HF safetensors of a model directory, read lazily: only the slices a rank needs."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        self.files = self._find_files()
        self.location: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        for path in self.files:
            with opened_safetensors(path) as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    piece = handle.get_slice(name)
                    self.location[name] = path
                    self.shapes[name] = tuple(piece.get_shape())
                    self.dtypes[name] = piece.get_dtype()

    def _find_files(self) -> list[Path]:
        index = self.model_dir / "model.safetensors.index.json"
        if index.is_file():
            files = self._index_files(index)
            missing = [path.name for path in files if not path.is_file()]
            if missing:
                raise SwallowTrtError(
                    f"{index.name} lists {', '.join(missing)}, which are not in {self.model_dir}; "
                    "the download is incomplete.",
                    "Download the missing shards and run again.",
                )
            return files
        files = sorted(self.model_dir.glob("*.safetensors"))
        if files:
            return files
        pickles = sorted(p.name for p in self.model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise SwallowTrtError(
                f"{self.model_dir} holds only pickle checkpoints ({', '.join(pickles[:3])}). Loading a pickle "
                "can execute arbitrary code, so swallow-trt reads only safetensors.",
                "Download the *.safetensors files of the model (huggingface-cli download REPO --include "
                "'*.safetensors' '*.json'), or convert the pickle yourself in a sandbox you trust.",
            )
        raise SwallowTrtError(f"no *.safetensors files in {self.model_dir}.")

    def _index_files(self, index: Path) -> list[Path]:
        """The files the index's weight_map names, each inside the model directory (`file_inside`)."""
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise SwallowTrtError(
                f"{index} has no weight_map object (tensor name -> file).", "Download the index again."
            )
        files = set()
        for tensor, name in weight_map.items():
            path = file_inside(self.model_dir, name)
            if path is None:
                raise SwallowTrtError(
                    f"{index} maps tensor {tensor!r} to {name!r}, which is not a file inside {self.model_dir}; "
                    "an index may name only files of its own model directory.",
                    "The index is damaged or hostile: download the model again from a source you trust.",
                )
            files.add(path)
        return sorted(files)

    def validate(self, needed: set[str], arch: LlamaArchitecture) -> None:
        """Every needed tensor exists, has the shape config.json implies and a dtype swallow-trt reads: the one
        config.json states (every tensor convert reads is a Llama float weight: linears, embeddings, norms,
        all saved in the model's dtype). Pre-quantized sources are refused here; a config.json dtype other
        than bfloat16/float16/float32 is not compared."""
        stored = DTYPE_NAMES[TORCH_DTYPES[arch.dtype]] if arch.dtype in TORCH_DTYPES else None
        missing = sorted(needed - self.location.keys())
        if missing:
            raise SwallowTrtError(
                f"{len(missing)} tensor(s) the conversion needs are missing from {self.model_dir}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.",
                "Is the download complete, and is config.json from the same model?",
            )
        expected = hf_tensor_shapes(arch)
        for name in (name for name in expected if name in needed):  # model order: first layer first
            if self.shapes[name] != expected[name]:
                raise SwallowTrtError(
                    f"tensor {name} in {self.location[name].name} has shape {list(self.shapes[name])}, but "
                    f"config.json implies {list(expected[name])}. config.json and the weights do not match."
                )
            if self.dtypes[name] not in ("BF16", "F16", "F32"):
                raise SwallowTrtError(
                    f"tensor {name} is {self.dtypes[name]}; convert reads bf16/fp16/fp32 weights.",
                    "Quantized source checkpoints are not supported.",
                )
            if stored is not None and self.dtypes[name] != stored:
                raise SwallowTrtError(
                    f"tensor {name} in {self.location[name].name} is stored as {self.dtypes[name]}, but "
                    f"config.json's dtype is {arch.dtype} ({stored}): same-size dtypes can be relabelled in a "
                    "header without changing a byte, and the values would be read as garbage.",
                    "Download the model again; if config.json's torch_dtype is what is wrong, correct it.",
                )

    def read(
        self,
        piece: SourceSlice,
        row_start: int | None = None,
        row_stop: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Rows of a slice (default: all of it, without padding) in `dtype` (default: as stored), read
        through a handle closed at once so no mapped file pages stay resident. Every cast is checked by
        `checked_cast`, so no caller can write or calibrate on an inf or NaN it made."""
        start = piece.row_start if row_start is None else row_start
        stop = piece.row_stop if row_stop is None else row_stop
        with opened_safetensors(self.location[piece.hf]) as handle:
            view = handle.get_slice(piece.hf)
            if len(self.shapes[piece.hf]) == 1:
                rows = view[start:stop]
            else:
                rows = view[start:stop, piece.col_start : piece.col_stop]
        return checked_cast(rows, dtype or rows.dtype, piece.hf, self.location[piece.hf].name)

    def check_range(self, names: set[str], dtype: torch.dtype, block_elements: int = 1 << 26) -> None:
        """Read every tensor in `names` once, in row blocks, through `checked_cast` to `dtype`: a weight
        that dtype cannot hold then fails in seconds or minutes, not after hours of calibration."""
        for name in tqdm(
            sorted(names), desc=f"range check ({dtype_name(dtype)})", unit="tensor", leave=False
        ):
            shape = self.shapes[name]
            rows = shape[0] if shape else 1
            step = max(1, block_elements // max(1, math.prod(shape[1:])))
            for start in range(0, rows, step):
                self.read(SourceSlice(name, start, min(rows, start + step)), dtype=dtype)

    def get(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One whole tensor by its HF name (calibration reads a layer's tensors this way)."""
        if name not in self.location:
            raise SwallowTrtError(
                f"tensor {name} is missing from {self.model_dir}.",
                "Is the download complete, and is config.json from the same model?",
            )
        return self.read(SourceSlice(name, 0, self.shapes[name][0]), dtype=dtype)

    def tensors(self, keep: Callable[[str], bool] = lambda name: True) -> dict[str, torch.Tensor]:
        """Every tensor `keep` accepts, as stored, each file opened once: loading a whole (small or
        converted) model, never a conversion's way of reading."""
        found: dict[str, torch.Tensor] = {}
        for path in self.files:
            with opened_safetensors(path) as handle:
                found.update({name: handle.get_tensor(name) for name in handle.keys() if keep(name)})  # noqa: SIM118
        return found


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


def open_source(model_dir: Path, arch: LlamaArchitecture, needed: set[str]) -> SourceCheckpoint:
    """The model's safetensors opened once and checked against config.json: every needed tensor there, in
    the shape it implies. Convert opens its source this way and hands it on (to calibration, too)."""
    source = SourceCheckpoint(model_dir)
    source.validate(needed, arch)
    return source


# --- the checked cast ------------------------------------------------------------------------------


def checked_cast(tensor: torch.Tensor, dtype: torch.dtype, name: str, file: str = "") -> torch.Tensor:
    """`tensor` in `dtype`, refusing values that become (or already were) inf/NaN.

    float16 tops out at 65504: a bf16 weight beyond it becomes inf without a word, and one inf makes the
    engine produce NaN. One aminmax over the result (NaN and inf propagate into it, no temporary tensor)
    catches both that and a source that was already damaged; the diagnosis runs only on failure.
    A read that needs no cast (bf16 -> bf16) is not scanned: it cannot overflow, and scanning it doubled
    the time of `convert --tp 2 --no-sha256` on an 8b-shape model (the values are otherwise only copied
    by the kernel); calibration casts to float32, so it does check a damaged source.
    """
    cast = tensor.to(dtype)
    if cast is tensor or cast.numel() == 0 or not cast.is_floating_point():
        return cast
    low, high = torch.aminmax(cast)
    if torch.isfinite(low) and torch.isfinite(high):
        return cast
    where = f"tensor {name}" + (f" in {file}" if file else "")
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise SwallowTrtError(
            f"{where} already holds inf/NaN values ({bad} of the {tensor.numel()} read). The checkpoint is "
            "damaged:",
            "download it again (and compare its sha256 with the hub), or use another copy.",
        )
    amax = tensor.abs().amax().float().item()
    limit = torch.finfo(dtype).max
    raise SwallowTrtError(
        f"{where} has max |value| {amax:.6g}, beyond the {dtype_name(dtype)} range (+-{limit:.6g}): "
        f"converting it to {dtype_name(dtype)} would make it inf and the engine produce NaN.",
        "Use --dtype bfloat16 (the range of float32) or --dtype auto (the model's own dtype).",
    )


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --- its sha256, computed once -------------------------------------------------------------------


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
            digest, origin = sha256_file(path), "computed"
        else:
            digest, origin = None, "not computed (--no-sha256)"
        return {"name": name, "bytes": size, "sha256": digest, "sha256_from": origin}

    def result(self) -> list[dict[str, Any]]:
        self.join()
        if self.error is not None:
            raise self.error
        return sorted(self.results, key=lambda entry: entry["name"])


def resolve_dtype(requested: str, arch: LlamaArchitecture) -> str:
    if requested != "auto":
        return requested
    return arch.dtype if arch.dtype in ("bfloat16", "float16", "float32") else "bfloat16"
