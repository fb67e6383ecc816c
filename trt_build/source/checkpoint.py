"""Reading the Hugging Face source of `swallow-trt convert`: lazily and safely.

A 70B source is 140 GB, so nothing here loads a whole model: `SourceCheckpoint` reads only the header
of each safetensors file up front (names, shapes, dtypes, checked against config.json) and then the
slices a rank asks for, in the checkpoint dtype through `checked_cast`, which refuses a value that
becomes inf/NaN in a cast (bf16 -> float16 beyond 65504, or already inf/NaN); convert (both targets) and
calibration read only through it. Pickle checkpoints (*.bin, *.pt, ...) are refused: loading one can
execute code. Every file it opens is named inside the model directory (files.py), and every tensor it
reads is stored in config.json's dtype (`validate`). Listing and hashing the files need no torch and live in
files.py; opening the source and reading raw rows (`read_rows`, for a conversion that only moves bytes) need
none either, so torch is imported only where a tensor is made.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from trt_build.common.errors import SwallowTrtError
from trt_build.formats.safetensors_stream import (
    DTYPE_BYTES,
    DTYPES,
    RawRows,
    opened_safetensors,
    read_header,
)
from trt_build.parallel.weight_map import SourceSlice
from trt_build.source.files import safetensors_files
from trt_build.source.hf_config import LlamaArchitecture, hf_tensor_shapes

if TYPE_CHECKING:
    import torch

# The dtypes a checkpoint may be written in (config.json `dtype` / `torch_dtype`) -> their safetensors name.
STORED_AS = {torch_name: name for name, (torch_name, _) in DTYPES.items() if name in ("BF16", "F16", "F32")}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a checkpoint dtype name ("bfloat16" -> torch.bfloat16)."""
    import torch

    if name not in STORED_AS:
        raise ValueError(f"unknown checkpoint dtype {name!r}; expected one of {', '.join(STORED_AS)}")
    return getattr(torch, name)


# --- reading the source lazily ---------------------------------------------------------------------


class SourceCheckpoint:
    """The HF safetensors of a model directory, read lazily: only the slices a rank needs."""

    def __init__(self, model_dir: Path, files: list[Path] | None = None):
        """`files`: the model's safetensors files when the caller has listed them (`safetensors_files`)."""
        self.model_dir = Path(model_dir)
        self.files = safetensors_files(self.model_dir) if files is None else files
        self.location: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self.offsets: dict[str, int] = {}  # where each tensor's bytes start in its file
        for path in self.files:
            for name, stored in read_header(path).items():
                self.location[name] = path
                self.shapes[name] = stored.shape
                self.dtypes[name] = stored.dtype
                self.offsets[name] = stored.start

    def validate(self, needed: set[str], arch: LlamaArchitecture) -> None:
        """Every needed tensor exists, has the shape config.json implies and a dtype swallow-trt reads: the one
        config.json states (every tensor convert reads is a Llama float weight: linears, embeddings, norms,
        all saved in the model's dtype). Pre-quantized sources are refused here; a config.json dtype other
        than bfloat16/float16/float32 is not compared."""
        stored = STORED_AS.get(arch.dtype)
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

    def read_rows(self, piece: SourceSlice, row_start: int, row_stop: int) -> RawRows:
        """Rows of a slice as stored, as bytes, without torch: what a conversion that moves bytes reads. Whole
        rows are the file's mapped pages themselves, with their place in the file (the writer copies them
        file to file in the kernel and its hasher reads the pages; they are unmapped once both are done); a
        column slice is cut out of them with numpy."""
        shape, path = self.shapes[piece.hf], self.location[piece.hf]
        width = math.prod(shape[1:]) * DTYPE_BYTES[self.dtypes[piece.hf]]  # bytes per stored row
        start, stop = self.offsets[piece.hf] + row_start * width, self.offsets[piece.hf] + row_stop * width
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        try:
            with open(path, "rb") as handle:
                mapped = mmap.mmap(handle.fileno(), stop - aligned, offset=aligned, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:  # ValueError: the file is now shorter than its header says
            raise SwallowTrtError(
                f"cannot read tensor {piece.hf} from {path} ({error}): the file changed since it was opened.",
                "Do not modify the model while it is converted; download it again if it is damaged.",
            ) from None
        data = memoryview(mapped)[start - aligned :]
        if len(shape) == 1 or (piece.col_start, piece.col_stop or shape[1]) == (0, shape[1]):
            return RawRows(data, row_stop - row_start, origin=(path, start))
        import numpy as np

        rows = np.frombuffer(data, np.uint8).reshape(row_stop - row_start, shape[1], -1)
        return RawRows(
            np.ascontiguousarray(rows[:, piece.col_start : piece.col_stop]).data, row_stop - row_start
        )

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


def open_source(
    model_dir: Path, arch: LlamaArchitecture, needed: set[str], files: list[Path] | None = None
) -> SourceCheckpoint:
    """The model's safetensors opened once and checked against config.json: every needed tensor there, in
    the shape it implies. Convert opens its source this way and hands it on (to calibration, too)."""
    source = SourceCheckpoint(model_dir, files)
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
    import torch

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


def resolve_dtype(requested: str, arch: LlamaArchitecture) -> str:
    if requested != "auto":
        return requested
    return arch.dtype if arch.dtype in ("bfloat16", "float16", "float32") else "bfloat16"
