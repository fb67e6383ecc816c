import pytest
import torch
from safetensors import safe_open

from trt_build.formats.safetensors_stream import StreamingSafetensorsWriter


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
