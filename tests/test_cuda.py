"""Calibration and convert on a CUDA device (`--device cuda`, `make engine DEVICE=cuda`) agree with the CPU.

Marked `cuda`: they run wherever torch sees a CUDA device (no TensorRT-LLM needed) and are skipped elsewhere,
like the `gpu` tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from trt_build.cli import main
from trt_build.quant.calibrate import calibrate_model
from trt_build.quant.calibration_result import FUSED_GROUPS

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 128256, (6, 32), generator=torch.Generator().manual_seed(5))


def test_fp8_amaxes_on_cuda_equal_the_cpu_ones(tiny_model_dir: Path, tokens: torch.Tensor) -> None:
    cpu = calibrate_model(tiny_model_dir, "fp8", tokens, device="cpu", show_progress=False)
    cuda = calibrate_model(tiny_model_dir, "fp8", tokens, device="cuda", show_progress=False)
    assert cuda.info["device"].startswith("cuda") and cpu.tensors.keys() == cuda.tensors.keys()
    for name, expected in cpu.tensors.items():
        got = cuda.tensors[name]
        assert got.device.type == "cpu", f"{name} is kept on {got.device}: results must come back to the host"
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-6, msg=name)


def test_awq_on_cuda_finds_scales_as_good_as_the_cpu_ones(tiny_model_dir: Path, tokens: torch.Tensor) -> None:
    cpu = calibrate_model(
        tiny_model_dir, "int4_awq", tokens, device="cpu", group_size=32, show_progress=False
    )
    cuda = calibrate_model(
        tiny_model_dir, "int4_awq", tokens, device="cuda", group_size=32, show_progress=False
    )
    assert cpu.tensors.keys() == cuda.tensors.keys()
    for layer in range(cpu.num_layers):
        for group in FUSED_GROUPS:
            here, there = cpu.stats[str(layer)][group], cuda.stats[str(layer)][group]
            # the alpha grid may tip to a neighbour on rounding; the error it reaches may not get worse
            assert there["mse_awq"] <= there["mse_rtn"], (layer, group)
            assert there["mse_awq"] == pytest.approx(here["mse_awq"], rel=0.05), (layer, group)


@pytest.mark.parametrize("target", ["engine", "pytorch"])
def test_convert_fp8_on_cuda_passes_verify(tiny_model_dir: Path, tmp_path: Path, target: str) -> None:
    output = tmp_path / f"fp8-{target}"
    args = ["convert", "--model-dir", str(tiny_model_dir), "--output", str(output), "--target", target]
    args += ["--quant", "fp8", "--device", "cuda", "--calib-size", "4", "--calib-seq-len", "32"]
    converted = CliRunner().invoke(main, args)
    assert converted.exit_code == 0, converted.output
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["calibration"]["device"].startswith("cuda")
    verified = CliRunner().invoke(
        main, ["verify", "--model-dir", str(tiny_model_dir), "--checkpoint", str(output)]
    )
    assert verified.exit_code == 0, verified.output
    assert "PASS" in verified.output
