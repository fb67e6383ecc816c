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
    with pytest.raises(ValueError, match=r"expected b torch.float32 \[2\]"):
        writer.write("b", torch.zeros(3))
    with pytest.raises(ValueError, match="closed before writing 1 tensors"):
        writer.close()
