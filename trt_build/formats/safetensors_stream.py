"""Write a safetensors file tensor by tensor, without holding the file in memory.

The safetensors header holds every tensor's dtype, shape and byte range. All of that is known from
the layout before any data is produced, so we write the header first and then append each tensor as
it is made; a rank file of many GB never exists whole in RAM.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from types import TracebackType

import torch

DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}

TensorSpec = tuple[str, torch.dtype, tuple[int, ...]]


def tensor_bytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


class StreamingSafetensorsWriter:
    """Writes tensors in the order of `layout`; each `write` is checked against its declared spec."""

    def __init__(self, path: Path, layout: list[TensorSpec], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.layout = list(layout)
        self._next = 0
        header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for name, dtype, shape in self.layout:
            if name in header:
                raise ValueError(f"tensor {name!r} appears twice in the layout of {self.path.name}")
            size = tensor_bytes(dtype, shape)
            header[name] = {
                "dtype": DTYPE_NAMES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        self.total_bytes = 8 + len(encoded) + offset
        self._handle = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._handle.write(struct.pack("<Q", len(encoded)))
        self._handle.write(encoded)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self.layout):
            raise ValueError(f"{self.path.name}: unexpected extra tensor {name!r}")
        expected_name, dtype, shape = self.layout[self._next]
        if (name, tensor.dtype, tuple(tensor.shape)) != (expected_name, dtype, shape):
            raise ValueError(
                f"{self.path.name}: expected {expected_name} {dtype} {list(shape)}, "
                f"got {name} {tensor.dtype} {list(tensor.shape)}"
            )
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        self._handle.write(memoryview(data))
        self._next += 1

    def close(self) -> None:
        self._handle.close()
        if self._next != len(self.layout):
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
