"""What kind of checkpoint a directory holds: a TensorRT-LLM checkpoint (engine target) or a Hugging Face /
ModelOpt unified one (pytorch target), with the latter's quantization. Read through the format readers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.formats.modelopt_config import read_modelopt_quantization
from trt_build.formats.trtllm_config import is_trtllm_config, read_config_json

TRTLLM_CHECKPOINT = "trtllm-checkpoint"  # config.json with `architecture` + rank*.safetensors
HF_CHECKPOINT = "hf"  # config.json with `architectures` + *.safetensors (ModelOpt unified when quantized)


@dataclass(frozen=True)
class CheckpointKind:
    kind: str
    quant_algo: str | None = None  # HF: hf_quant_config.json quantization.quant_algo
    kv_cache_quant_algo: str | None = None
    quant_config: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        return "engine" if self.kind == TRTLLM_CHECKPOINT else "pytorch"


def checkpoint_kind(directory: Path) -> CheckpointKind:
    """TRT-LLM checkpoint or HF/ModelOpt directory, with the HF one's quantization; else a clear error."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise SwallowTrtError(
            f"{config_path} not found: pass a TRT-LLM checkpoint (`swallow-trt convert`) or a Hugging Face / "
            "ModelOpt checkpoint directory."
        )
    config = read_config_json(config_path)
    if is_trtllm_config(config):
        if not list(directory.glob("rank*.safetensors")):
            raise SwallowTrtError(f"{directory} is a TRT-LLM checkpoint config without rank*.safetensors.")
        return CheckpointKind(TRTLLM_CHECKPOINT)
    if "architectures" in config:
        if not list(directory.glob("*.safetensors")):
            raise SwallowTrtError(
                f"{directory} has a Hugging Face config.json but no *.safetensors (swallow-trt loads only "
                "safetensors weights)."
            )
        block = read_modelopt_quantization(directory)
        if block is None:
            return CheckpointKind(HF_CHECKPOINT)
        return CheckpointKind(HF_CHECKPOINT, block.get("quant_algo"), block.get("kv_cache_quant_algo"), block)
    raise SwallowTrtError(
        f"{config_path} has neither 'architecture' (TRT-LLM checkpoint) nor 'architectures' (Hugging Face)."
    )
