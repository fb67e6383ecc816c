import errno
import hashlib
import os

import pytest
import torch
from safetensors import safe_open

from trt_build.common.errors import SwallowTrtError
from trt_build.formats import safetensors_stream
from trt_build.formats.safetensors_stream import RawRows, StreamingSafetensorsWriter


def test_round_trip_through_safetensors(tmp_path):
    tensors = {
        "w.bf16": torch.randn(3, 5).to(torch.bfloat16),
        "w.fp8": (torch.randn(4, 8) * 100).clamp(-448, 448).to(torch.float8_e4m3fn),
        "packed.int8": torch.randint(-128, 127, (2, 3), dtype=torch.int8),
        "scale.f32": torch.tensor([0.5]),
        "scalar": torch.tensor(2.0),
    }
    layout = [(name, t.dtype, tuple(t.shape)) for name, t in tensors.items()]
    path = tmp_path / "rank0.safetensors"
    with StreamingSafetensorsWriter(path, layout, metadata={"format": "pt"}) as writer:
        for name, tensor in tensors.items():
            writer.write(name, tensor)
    assert path.stat().st_size == writer.total_bytes
    with safe_open(path, "pt") as handle:
        assert set(handle.keys()) == set(tensors)
        for name, tensor in tensors.items():
            loaded = handle.get_tensor(name)
            assert loaded.dtype == tensor.dtype and loaded.shape == tensor.shape
            assert torch.equal(loaded.reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8))


def test_out_of_layout_writes_are_refused(tmp_path):
    layout = [("a", torch.float32, (2,)), ("b", torch.float32, (2,))]
    writer = StreamingSafetensorsWriter(tmp_path / "x.safetensors", layout)
    with pytest.raises(ValueError, match="expected a"):
        writer.write("b", torch.zeros(2))
    writer.write("a", torch.zeros(2))
    with pytest.raises(ValueError, match=r"expected b F32 \[2\]"):
        writer.write("b", torch.zeros(3))
    with pytest.raises(ValueError, match="closed before writing 1 tensors"):
        writer.close()


def test_the_disk_is_asked_to_write_as_the_data_comes_and_a_finished_file_is_synced(tmp_path, monkeypatch):
    """Writeback starts every WRITEBACK_BYTES (the disk works while the CPU converts), each range once and in
    order; the finished file is fsync'ed (durable), an unfinished one is not."""
    from trt_build.formats import safetensors_stream

    ranges, synced = [], []
    monkeypatch.setattr(safetensors_stream, "WRITEBACK_BYTES", 1000)
    monkeypatch.setattr(
        safetensors_stream,
        "SYNC_FILE_RANGE",
        lambda fd, start, length, flags: ranges.append((start, length, flags)),
    )
    monkeypatch.setattr(safetensors_stream.os, "fsync", synced.append)
    layout = [(f"w{i}", torch.float32, (100, 4)) for i in range(5)]  # 1600 bytes each
    with StreamingSafetensorsWriter(tmp_path / "a.safetensors", layout) as writer:
        for name, dtype, shape in layout:
            writer.write(name, torch.ones(shape, dtype=dtype))
    assert [flags for *_, flags in ranges] == [safetensors_stream.SYNC_FILE_RANGE_WRITE] * 5
    assert [start for start, *_ in ranges] == [0] + [start + length for start, length, _ in ranges[:-1]]
    assert ranges[-1][0] + ranges[-1][1] == (tmp_path / "a.safetensors").stat().st_size
    assert len(synced) == 1
    unfinished = StreamingSafetensorsWriter(tmp_path / "b.safetensors", layout)
    unfinished.write("w0", torch.ones((100, 4)))
    with pytest.raises(ValueError, match="closed before writing"):
        unfinished.close()
    assert len(synced) == 1


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_raw_rows_of_a_file_are_copied_in_the_kernel_and_hashed(tmp_path, monkeypatch, kernel_copy):
    """Rows that are a file's bytes are copied file to file (copy_file_range); where the kernel refuses that
    (another file system), they are written from memory for the rest of the file. Either way the file holds
    them and its sha256 is hashlib's."""
    payload = torch.randn(64, 128).to(torch.bfloat16)
    raw = payload.view(torch.uint8).numpy().tobytes()
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 100 + raw)
    calls = []
    copy_file_range = os.copy_file_range

    def copy(*args):
        calls.append(args)
        if not kernel_copy:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return copy_file_range(*args)

    monkeypatch.setattr(safetensors_stream.os, "copy_file_range", copy)
    path, half = tmp_path / "out.safetensors", len(raw) // 2
    with StreamingSafetensorsWriter(
        path, [("a", "BF16", (64, 128)), ("b", "BF16", (2,))], sha256=True
    ) as writer:
        writer.write("a", RawRows(memoryview(raw)[:half], 32, origin=(source, 100)))
        writer.write("a", RawRows(memoryview(raw)[half:], 32, origin=(source, 100 + half)))
        writer.write("b", RawRows(b"\x80\x3f\x00\x40", 2))
    with safe_open(path, "pt") as handle:
        assert torch.equal(handle.get_tensor("a"), payload)
        assert handle.get_tensor("b").tolist() == [1.0, 2.0]
    assert writer.sha256_hex() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(calls) == (2 if kernel_copy else 1)


def test_a_source_that_ends_while_it_is_copied_is_named(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00" * 100)
    with (
        pytest.raises(SwallowTrtError, match="source.bin ended while it was copied"),
        StreamingSafetensorsWriter(tmp_path / "out.safetensors", [("a", "U8", (200,))]) as writer,
    ):
        writer.write("a", RawRows(b"\x00" * 200, 200, origin=(source, 0)))
