"""Write a safetensors file tensor by tensor, without holding the file in memory.

The safetensors header holds every tensor's dtype, shape and byte range. All of that is known from
the layout before any data is produced, so we write the header first and then append each tensor as
it is made; a rank file of many GB never exists whole in RAM. Both convert targets and the tiny models
write through it. Reading goes through `opened_safetensors`, the one place a damaged file becomes a message.
This module imports torch only when a torch tensor is written or read: a conversion that only moves bytes
(`RawRows`) runs without it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from safetensors import SafetensorError, safe_open

from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import BackgroundSha256

if TYPE_CHECKING:
    import torch

# safetensors dtype name -> (the torch dtype it stores, bytes per element)
DTYPES = {
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
DTYPE_BYTES = {name: size for name, (_, size) in DTYPES.items()}

DType = Union[str, "torch.dtype"]  # a safetensors dtype name ("BF16"), or the torch dtype it stores
TensorSpec = tuple[str, DType, tuple[int, ...]]


@cache
def _torch_names() -> dict[Any, str]:
    import torch

    return {getattr(torch, torch_name): name for name, (torch_name, _) in DTYPES.items()}


def dtype_name(dtype: DType) -> str:
    """The safetensors name of a dtype ("BF16" for torch.bfloat16; a name is returned as it is)."""
    return dtype if isinstance(dtype, str) else _torch_names()[dtype]


@dataclass(frozen=True)
class RawRows:
    """Consecutive rows of a tensor as bytes, already in the layout's dtype: what a conversion that only moves
    bytes (no cast, no quantization) writes, without torch."""

    data: bytes | memoryview
    rows: int
    # the file and byte offset `data` lies at, when it is a file's bytes unchanged: the writer then copies them
    # from file to file in the kernel (copy_file_range), and reads `data` only to hash it
    origin: tuple[Path, int] | None = None

    @property
    def nbytes(self) -> int:  # as torch.Tensor.nbytes
        return memoryview(self.data).nbytes


# copy_file_range errors that mean "not between these files" (another file system on an older kernel, a file
# system without it): the bytes are then written from memory instead
KERNEL_COPY_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}
WRITEBACK_BYTES = 64 << 20  # the kernel is asked to start writing each time this much more is written
SYNC_FILE_RANGE_WRITE = 2  # Linux sync_file_range flag: start writeback of dirty pages, do not wait


def _sync_file_range() -> Any:
    """Linux's sync_file_range from libc, or None elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


SYNC_FILE_RANGE = _sync_file_range()


def _damaged(path: Path, error: Exception) -> SwallowTrtError:
    if isinstance(error, OSError):
        return SwallowTrtError(f"cannot read {path}: {error.strerror or error}.")
    return SwallowTrtError(
        f"{path} is not a valid safetensors file ({error}): it is damaged or incompletely written.",
        "Download or convert it again (and compare its sha256 with the one recorded for it).",
    )


def open_safetensors(path: Path, framework: str = "pt") -> Any:
    """`safe_open(path)` for reading; framework "numpy" lists names, shapes and dtypes without importing torch.
    What safetensors refuses while opening (a truncated file, an absurd header length, a header that is not
    JSON, overlapping or past-end offsets, a size that does not match a dtype and shape) or the OS refuses
    (unreadable) becomes one `SwallowTrtError` naming the file."""
    try:
        return safe_open(path, framework=framework)
    except (SafetensorError, OSError) as error:
        raise _damaged(path, error) from None


@contextmanager
def opened_safetensors(path: Path, framework: str = "pt") -> Iterator[Any]:
    """`open_safetensors(path)`, its handle closed on leaving; what reading it refuses is named the same way."""
    try:
        with open_safetensors(path, framework) as handle:
            yield handle
    except (SafetensorError, OSError) as error:
        raise _damaged(path, error) from None


def tensor_bytes(dtype: DType, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * DTYPE_BYTES[dtype_name(dtype)]


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a safetensors file, as its header describes it."""

    dtype: str  # safetensors name, "BF16"
    shape: tuple[int, ...]
    start: int  # where its bytes start in the file


def read_header(path: Path) -> dict[str, StoredTensor]:
    """Every tensor of a safetensors file, from its header alone (no tensor is read, torch is not needed).
    What safetensors refuses in a header (an absurd length, not JSON, offsets overlapping or past the end, a
    size that does not match dtype and shape) is checked by `open_safetensors` first and named like any
    other damaged file."""
    with opened_safetensors(path, framework="numpy"):
        pass
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return {
        name: StoredTensor(entry["dtype"], tuple(entry["shape"]), 8 + length + entry["data_offsets"][0])
        for name, entry in header.items()
    }


class StreamingSafetensorsWriter:
    """Writes tensors in the order of `layout`; each `write` is checked against its declared spec.

    A large tensor may come as consecutive row blocks (each `write` a block of its rows), so a converter never
    holds a whole embedding. With `sha256` the bytes are hashed as they go out, on a thread beside the writing
    (`BackgroundSha256`), so a multi-GB file is never read back to record its digest (`sha256_hex`, and the
    time hashing took in `hash_seconds`).
    The disk writes while the data is still being made: every WRITEBACK_BYTES the kernel is told to start
    writing what came before (otherwise it waits until GBs are dirty, and the disk idles while the CPU converts:
    `convert --tp 2` of 8 8b-shape layers took 20.5 s before, 15.6-16.7 s after, by
    benchmarks/perf/convert_throughput.py). `close` waits until a complete file is on disk, so a finished
    checkpoint survives a power cut.
    """

    def __init__(
        self,
        path: Path,
        layout: list[TensorSpec],
        metadata: dict[str, str] | None = None,
        sha256: bool = False,
    ):
        self.path = Path(path)
        self.layout = list(layout)
        self._next = 0
        self._rows_written = 0  # of the tensor being written, when it comes in row blocks
        header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for name, dtype, shape in self.layout:
            if name in header:
                raise ValueError(f"tensor {name!r} appears twice in the layout of {self.path.name}")
            size = tensor_bytes(dtype, shape)
            header[name] = {
                "dtype": dtype_name(dtype),
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        head = struct.pack("<Q", len(encoded)) + encoded
        self.total_bytes = len(head) + offset
        self._hasher = BackgroundSha256(head) if sha256 else None
        self._handle = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed in close())
        self._kernel_copy = hasattr(os, "copy_file_range")
        self._position = 0  # bytes handed to the file so far
        self._writeback_from = 0  # where the kernel was last asked to start writing
        self._write_all(memoryview(head))

    def write(self, name: str, tensor: torch.Tensor | RawRows) -> None:
        """The next tensor of the layout, whole or as its next block of rows: a torch tensor, or `RawRows`
        already in the layout's dtype."""
        if self._next >= len(self.layout):
            raise ValueError(f"{self.path.name}: unexpected extra tensor {name!r}")
        expected, dtype, shape = self.layout[self._next]
        total_rows, wanted_dtype = (shape or (1,))[0], dtype_name(dtype)
        if isinstance(tensor, RawRows):  # bytes already in the layout's dtype
            data = memoryview(tensor.data).cast("B")
            rows, got_dtype = tensor.rows, wanted_dtype
            fits = data.nbytes == rows * tensor_bytes(dtype, tuple(shape[1:]))
            got = f"{rows} rows of {data.nbytes} bytes"
        else:
            import torch

            rows, got_dtype = (tensor.shape[0] if tensor.dim() else 1), dtype_name(tensor.dtype)
            fits = tuple(tensor.shape[1:]) == tuple(shape[1:])
            got = f"{got_dtype} {list(tensor.shape)}"
            data = memoryview(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
        if (
            name != expected
            or got_dtype != wanted_dtype
            or not fits
            or self._rows_written + rows > total_rows
        ):
            raise ValueError(
                f"{self.path.name}: expected {expected} {wanted_dtype} {list(shape)} "
                f"(rows {self._rows_written}+), got {name} {got}"
            )
        if isinstance(tensor, RawRows) and tensor.origin is not None and self._kernel_copy:
            self._copy_from(*tensor.origin, data)
        else:
            self._write_all(data)
        if self._position - self._writeback_from >= WRITEBACK_BYTES:
            self._start_writeback()
        if self._hasher is not None:
            self._hasher.update(data)
        self._rows_written += rows
        if self._rows_written == total_rows:
            self._next += 1
            self._rows_written = 0

    def _write_all(self, data: memoryview) -> None:
        while data:
            written = self._handle.write(data)
            self._position += written
            data = data[written:]

    def _copy_from(self, source: Path, offset: int, data: memoryview) -> None:
        """`data`, which lies at `offset` in `source`, copied file to file in the kernel: one copy between page
        caches instead of two through this process, about half the system time (benchmarks/perf/
        convert_throughput.py measures the whole conversion)."""
        done = 0
        try:
            with open(source, "rb", buffering=0) as handle:
                while done < data.nbytes:
                    copied = os.copy_file_range(
                        handle.fileno(), self._handle.fileno(), data.nbytes - done, offset + done
                    )
                    if copied == 0:
                        raise SwallowTrtError(
                            f"{source} ended while it was copied: it changed since it was opened."
                        )
                    done += copied
                    self._position += copied
        except OSError as error:
            if error.errno not in KERNEL_COPY_UNSUPPORTED:
                raise
            self._kernel_copy = False  # for the rest of this file
            self._write_all(data[done:])

    def _start_writeback(self) -> None:
        if SYNC_FILE_RANGE is None:
            return
        SYNC_FILE_RANGE(
            self._handle.fileno(),
            self._writeback_from,
            self._position - self._writeback_from,
            SYNC_FILE_RANGE_WRITE,
        )
        self._writeback_from = self._position

    def sha256_hex(self) -> str | None:
        """The file's sha256 (None without `sha256`), once every tensor is written."""
        return self._hasher.hexdigest() if self._hasher is not None else None

    @property
    def hash_seconds(self) -> float:
        return self._hasher.seconds if self._hasher is not None else 0.0

    @property
    def complete(self) -> bool:
        """Every tensor of the layout is written."""
        return self._next == len(self.layout)

    def close(self) -> None:
        if self.complete:
            os.fsync(self._handle.fileno())
        self._handle.close()
        if not self.complete:
            if self._hasher is not None:
                self._hasher.stop()
            missing = [name for name, _, _ in self.layout[self._next :]]
            raise ValueError(
                f"{self.path.name}: closed before writing {len(missing)} tensors: {missing[:3]}..."
            )

    def __enter__(self) -> StreamingSafetensorsWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._handle.close()
            if self._hasher is not None:
                self._hasher.stop()


def shard_layout(layout: list[TensorSpec], max_shard_bytes: int) -> list[tuple[str, list[TensorSpec]]]:
    """Consecutive groups of tensors of at most `max_shard_bytes` (a larger tensor gets its own shard),
    named as transformers names them."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in layout:
        nbytes = tensor_bytes(spec[1], spec[2])
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    if len(shards) == 1:
        return [("model.safetensors", shards[0])]
    return [
        (f"model-{i:05d}-of-{len(shards):05d}.safetensors", shard) for i, shard in enumerate(shards, start=1)
    ]


def shard_index(shards: list[tuple[str, list[TensorSpec]]]) -> dict[str, Any]:
    """model.safetensors.index.json of sharded files: total tensor bytes and the file of every tensor."""
    total = sum(tensor_bytes(dtype, shape) for _, shard in shards for _, dtype, shape in shard)
    return {
        "metadata": {"total_size": total},
        "weight_map": {name: file for file, shard in shards for name, _, _ in shard},
    }
