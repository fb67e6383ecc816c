"""Triton's gRPC tensors as raw bytes, and the channel to a tritonserver: the one codec of the gate, the
benchmark client and the conformance checks.

A tensor travels as `raw_input_contents` / `raw_output_contents`: fixed-size values little-endian, each
BYTES element a 4-byte little-endian length and then its bytes. Reading them with `struct` builds no numpy
arrays per streamed chunk.
"""

from __future__ import annotations

import struct

import grpc
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, service_pb2_grpc

# the protocol's fixed-size types as struct codes; BF16 is the top half of an FP32
STRUCT_CODES = {
    "BOOL": "?",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
INTEGER_TYPES = frozenset(name for name in STRUCT_CODES if "INT" in name)


def encode(datatype: str, values: list) -> bytes:
    """Values as raw contents (BYTES: str or bytes elements, strings as UTF-8)."""
    if datatype == "BYTES":
        pieces = [value if isinstance(value, bytes) else str(value).encode("utf-8") for value in values]
        return b"".join(struct.pack("<I", len(piece)) + piece for piece in pieces)
    if datatype == "BF16":
        return b"".join(struct.pack("<f", value)[2:] for value in values)
    return struct.pack(f"<{len(values)}{STRUCT_CODES[datatype]}", *values)


def decode(datatype: str, raw: bytes) -> list:
    """The values of raw contents (BYTES elements as bytes)."""
    if datatype == "BYTES":
        values, offset = [], 0
        while offset + 4 <= len(raw):
            (size,) = struct.unpack_from("<I", raw, offset)
            values.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
        return values
    if datatype == "BF16":
        return [struct.unpack("<f", b"\0\0" + raw[k : k + 2])[0] for k in range(0, len(raw), 2)]
    code = STRUCT_CODES[datatype]
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))


def open_channel(target: str) -> tuple[grpc.aio.Channel, service_pb2_grpc.GRPCInferenceServiceStub]:
    """An asyncio channel to tritonserver's gRPC port (host:port), messages as large as the protocol allows,
    and the inference service on it; made inside the event loop that uses it."""
    size = MAX_GRPC_MESSAGE_SIZE
    options = [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]
    channel = grpc.aio.insecure_channel(target, options=options)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)
