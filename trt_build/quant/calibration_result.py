"""What calibration found, independent of any output format, and how it is kept on disk for reuse."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import write_manifest

# Linears that read the same input: one shared FP8 scale (fused qkv, fc+gate) and one AWQ search each.
FUSED_GROUPS: dict[str, tuple[str, ...]] = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}
GROUP_OF = {linear: group for group, members in FUSED_GROUPS.items() for linear in members}


@dataclass
class CalibrationResult:
    """What calibration found, independent of any output layout (TRT-LLM checkpoint or ModelOpt HF).

    `tensors` (float32, names follow the HF checkpoint):
      model.layers.{i}.{linear}.input_amax       []    max |input| of the linear
      model.layers.{i}.{linear}.weight_amax      []    max |W|
      model.layers.{i}.{linear}.pre_quant_scale  [in]  AWQ activation multiplier 1/s (int4_awq only);
                                                       identical for q/k/v and for gate/up
      model.layers.{i}.self_attn.k_amax          []    max |K| after RoPE, as cached (KV cache)
      model.layers.{i}.self_attn.v_amax          []    max |V|
    `stats[str(i)]`: per layer seconds and, per fused group, min/max/mean of input amax and (AWQ) the
    chosen alpha, the pre-quant scale range and the output MSE of round-to-nearest vs AWQ.
    """

    scheme: str
    num_layers: int
    tensors: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _get(self, layer: int, suffix: str) -> torch.Tensor:
        name = f"model.layers.{layer}.{suffix}"
        if name not in self.tensors:
            raise KeyError(f"{name} is not in this {self.scheme} calibration result")
        return self.tensors[name]

    def input_amax(self, layer: int, linear: str) -> torch.Tensor:
        return self._get(layer, f"{linear}.input_amax")

    def weight_amax(self, layer: int, linear: str) -> torch.Tensor:
        return self._get(layer, f"{linear}.weight_amax")

    def pre_quant_scale(self, layer: int, linear: str) -> torch.Tensor:
        return self._get(layer, f"{linear}.pre_quant_scale")

    def group_input_amax(self, layer: int, group: str) -> torch.Tensor:
        """Shared input amax of a fused group (`qkv`, `o`, `gate_up`, `down`): the max of its parts."""
        return torch.stack([self.input_amax(layer, linear) for linear in FUSED_GROUPS[group]]).amax()

    def group_weight_amax(self, layer: int, group: str) -> torch.Tensor:
        return torch.stack([self.weight_amax(layer, linear) for linear in FUSED_GROUPS[group]]).amax()

    def kv_amax(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._get(layer, "self_attn.k_amax"), self._get(layer, "self_attn.v_amax")

    def save(self, directory: Path) -> None:
        """calibration.safetensors + calibration.json into an existing directory."""
        directory = Path(directory)
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, directory / "calibration.safetensors")
        meta = {"scheme": self.scheme, "num_layers": self.num_layers, "info": self.info, "stats": self.stats}
        (directory / "calibration.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> CalibrationResult:
        directory = Path(directory)
        meta_path = directory / "calibration.json"
        if not meta_path.is_file():
            raise SwallowTrtError(f"{meta_path} not found: not a calibration directory.")
        meta = json.loads(meta_path.read_text())
        tensors = load_file(directory / "calibration.safetensors")
        return cls(meta["scheme"], meta["num_layers"], tensors, meta["info"], meta["stats"])


def save_calibration(directory: Path, result: CalibrationResult, **manifest: Any) -> Path:
    """A result as a calibration directory (reusable with `convert --calibration DIR`): the result and a
    `calibrate` manifest with `manifest`'s fields. `directory` must exist."""
    result.save(directory)
    write_manifest(directory, "calibrate", scheme=result.scheme, **manifest)
    return Path(directory)
