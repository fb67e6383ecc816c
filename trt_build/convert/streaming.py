"""Streaming checkpoint files in bounded memory, for both convert targets.

Every output file's layout (names, dtypes, shapes) is known before any data is read, so its safetensors header
is written first; then `write_files` takes each tensor as it is produced (large ones as consecutive row blocks:
`row_blocks` as torch tensors, `raw_row_blocks` as the source's bytes) and hashes the bytes as they go out, on a
thread beside the writing, so no file is read back. `prefetched` reads the next tensor groups on a thread while
the current one is written. `release_freed_memory_eagerly` keeps peak RSS flat over many layers.
This module imports torch only to make tensors (`row_blocks`).
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from trt_build import __version__
from trt_build.formats.safetensors_stream import (
    DType,
    RawRows,
    StreamingSafetensorsWriter,
    TensorSpec,
    tensor_bytes,
)
from trt_build.parallel.weight_map import SourceSlice
from trt_build.source.checkpoint import SourceCheckpoint

if TYPE_CHECKING:
    import torch

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
BLOCK_BYTES = 64 << 20  # large unsplit tensors (embedding, lm_head) are streamed in row blocks this big
METADATA = {"format": "pt", "producer": f"swallow-trt {__version__}"}

T = TypeVar("T")


class Cancelled(Exception):
    """Another rank failed or the run was interrupted; this rank stops at its next tensor."""


def row_ranges(source: SourceCheckpoint, piece: SourceSlice, dtype: DType) -> Iterator[tuple[int, int]]:
    """(start, stop) of the rows of one slice in blocks of about BLOCK_BYTES of `dtype`."""
    step = max(1, BLOCK_BYTES // tensor_bytes(dtype, piece.shape(source.shapes[piece.hf])[1:]))
    for start in range(piece.row_start, piece.row_stop, step):
        yield start, min(start + step, piece.row_stop)


def row_blocks(source: SourceCheckpoint, piece: SourceSlice, dtype: torch.dtype) -> Iterator[torch.Tensor]:
    """Rows of one slice in blocks of about BLOCK_BYTES, then its zero padding rows."""
    import torch

    for start, stop in row_ranges(source, piece, dtype):
        yield source.read(piece, start, stop, dtype)
    if piece.pad_rows:
        yield torch.zeros((piece.pad_rows, *piece.shape(source.shapes[piece.hf])[1:]), dtype=dtype)


def raw_row_blocks(source: SourceCheckpoint, piece: SourceSlice) -> Iterator[RawRows]:
    """`row_blocks` as stored, as bytes (no torch): for a conversion that writes the source dtype unchanged."""
    dtype = source.dtypes[piece.hf]
    for start, stop in row_ranges(source, piece, dtype):
        yield source.read_rows(piece, start, stop)
    if piece.pad_rows:
        row = tensor_bytes(dtype, piece.shape(source.shapes[piece.hf])[1:])
        yield RawRows(bytes(piece.pad_rows * row), piece.pad_rows)


@dataclass(frozen=True)
class WrittenFile:
    name: str
    bytes: int
    sha256: str | None  # None without hashing (--no-sha256)
    tensors: int
    hash_seconds: float


def write_files(
    files: list[tuple[Path, list[TensorSpec]]],
    tensors: Iterator[tuple[str, torch.Tensor | RawRows]],
    sha256: bool,
    desc: str,
    position: int = 0,
    cancel: threading.Event | None = None,
) -> list[WrittenFile]:
    """Stream `tensors` (in layout order, a large one as consecutive row blocks) into `files`, one after the
    other; returns what was written. `cancel` stops it at the next tensor."""
    written: list[WrittenFile] = []
    total = sum(tensor_bytes(dtype, shape) for _, layout in files for _, dtype, shape in layout)
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, position=position, leave=False) as bar:
        for path, layout in files:
            with StreamingSafetensorsWriter(path, layout, METADATA, sha256=sha256) as writer:
                while not writer.complete:
                    item = next(tensors, None)
                    if item is None:
                        raise ValueError(f"{path.name}: the tensors ran out before its layout was written")
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    name, tensor = item
                    writer.write(name, tensor)
                    bar.update(tensor.nbytes)
                    bar.set_postfix_str(name, refresh=False)
                    del item, tensor
            digest = writer.sha256_hex()
            written.append(
                WrittenFile(path.name, writer.total_bytes, digest, len(layout), writer.hash_seconds)
            )
    extra = next(tensors, None)
    if extra is not None:
        raise ValueError(f"unexpected extra tensor {extra[0]!r} after {files[-1][0].name}")
    return written


def prefetched(items: Iterator[T], depth: int, cancel: threading.Event) -> Iterator[T]:
    """Run `items` in a reader thread, `depth` items ahead, so reading overlaps writing."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item: Any) -> bool:
        while not (stop.is_set() or cancel.is_set()):
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(error)
            return
        put(done)

    reader = threading.Thread(target=run, name="convert-reader", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = slots.get(timeout=0.1)
            except queue.Empty:
                if cancel.is_set():
                    raise Cancelled() from None
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
    finally:
        stop.set()
        reader.join()


def release_freed_memory_eagerly() -> None:
    """Make glibc give freed tensor buffers (>= 1 MiB) straight back to the OS.

    glibc raises its mmap threshold each time a large block is freed, after which 16-32 MB tensors
    come from thread arenas that fragment; peak RSS then grew with the layer count (measured: +28%
    from 2 to 6 layers of 8b-shape). A fixed threshold keeps it flat. No-op where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        return
