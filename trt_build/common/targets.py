"""Which TensorRT-LLM target to build for, and what kind of checkpoint a directory holds.

Two targets (../shared/ARCHITECTURE.md, "Two TensorRT-LLM targets"):
  engine   TRT-LLM checkpoint -> trtllm-build -> TensorRT engine -> Triton C++ `tensorrtllm` backend.
  pytorch  HF / ModelOpt unified checkpoint -> LLM-API options -> Triton `llmapi` model or trtllm-serve.

`--target auto` reads the installed tensorrt_llm version (trtllm-pytorch-backend.md section 1.2):
  <= 1.3.0rc20 (the last release with trtllm-build; 1.2.1 is the newest stable and NGC 26.07's) -> engine
  >  1.3.0rc20 (1.3.0rc21 and later: the TensorRT backend and trtllm-build are removed)   -> pytorch
  not installed -> pytorch: it runs on every release from 1.0 on (where PyTorch became the default
                  backend), the 1.2.1 of NGC 26.07 included, while an engine must be built on the GPU host
                  with the exact TensorRT-LLM version that serves it. Pass --target engine for engines.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from packaging.version import InvalidVersion, Version

TARGET_CHOICES = ("engine", "pytorch", "auto")
LAST_ENGINE_RELEASE = Version("1.3.0rc20")  # its release note: the last one supporting the TensorRT backend
NOT_INSTALLED_TARGET = "pytorch"


@dataclass(frozen=True)
class TargetChoice:
    target: str  # "engine" or "pytorch"
    reason: str


def installed_tensorrt_llm_version() -> str | None:
    """The tensorrt_llm version of this interpreter's environment (no import: it needs CUDA)."""
    for name in ("tensorrt_llm", "tensorrt-llm"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def target_for_version(version: str | None) -> TargetChoice:
    """The target that the given tensorrt_llm version serves (None: not installed)."""
    if version is None:
        return TargetChoice(
            NOT_INSTALLED_TARGET,
            "no tensorrt_llm is installed here; choosing pytorch, which every TensorRT-LLM from 1.0 on "
            "serves (also 1.2.1 in NGC 26.07). Pass --target engine for a TensorRT engine "
            f"(TensorRT-LLM <= {LAST_ENGINE_RELEASE}).",
        )
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise click.ClickException(
            f"tensorrt_llm version {version!r} is not a version number; pass --target engine or pytorch."
        ) from None
    if parsed <= LAST_ENGINE_RELEASE:
        return TargetChoice(
            "engine",
            f"tensorrt_llm {version} has trtllm-build (<= {LAST_ENGINE_RELEASE}, the last release with "
            "the TensorRT backend); pass --target pytorch to use its PyTorch backend instead.",
        )
    return TargetChoice(
        "pytorch",
        f"tensorrt_llm {version} is after {LAST_ENGINE_RELEASE}: the TensorRT engine backend and "
        "trtllm-build were removed, the PyTorch backend loads HF checkpoints directly.",
    )


def resolve_target(target: str, version: str | None = None, echo: bool = True) -> str:
    """`engine`/`pytorch` as given; `auto` decided by the installed version, saying which and why."""
    if target != "auto":
        return target
    choice = target_for_version(version if version is not None else installed_tensorrt_llm_version())
    if echo:
        click.echo(f"--target auto: {choice.target} ({choice.reason})", err=True)
    return choice.target


# ---------------------------------------------------------------- checkpoint kinds

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


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise click.ClickException(f"{path} is not valid JSON ({error}).") from None


def hf_quantization(directory: Path) -> dict[str, Any] | None:
    """The ModelOpt quantization block: hf_quant_config.json (authoritative for every TRT-LLM version,
    trtllm-pytorch-backend.md 2.3), else config.json's inline modelopt `quantization_config`."""
    quant_file = directory / "hf_quant_config.json"
    if quant_file.is_file():
        block = _json(quant_file).get("quantization")
        if not isinstance(block, dict):
            raise click.ClickException(f"{quant_file} has no 'quantization' block.")
        return block
    inline = _json(directory / "config.json").get("quantization_config")
    if not inline:
        return None
    if not str(inline.get("quant_method", "")).startswith("modelopt"):
        raise click.ClickException(
            f"{directory / 'config.json'}: quantization_config.quant_method "
            f"{inline.get('quant_method')!r} is not a ModelOpt checkpoint; swallow-trt plans ModelOpt "
            "unified checkpoints (`swallow-trt convert --target pytorch`)."
        )
    raise click.ClickException(
        f"{directory} has a ModelOpt quantization_config but no hf_quant_config.json: TensorRT-LLM 1.1/1.2 "
        "read only that file. Export the checkpoint again with it (ModelOpt writes both)."
    )


def checkpoint_kind(directory: Path) -> CheckpointKind:
    """TRT-LLM checkpoint or HF/ModelOpt directory, with the HF one's quantization; else a clear error."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise click.ClickException(
            f"{config_path} not found: pass a TRT-LLM checkpoint (`swallow-trt convert`) or a Hugging Face / "
            "ModelOpt checkpoint directory."
        )
    config = _json(config_path)
    if "architecture" in config and "architectures" not in config:
        if not list(directory.glob("rank*.safetensors")):
            raise click.ClickException(
                f"{directory} is a TRT-LLM checkpoint config without rank*.safetensors."
            )
        return CheckpointKind(TRTLLM_CHECKPOINT)
    if "architectures" in config:
        if not list(directory.glob("*.safetensors")):
            raise click.ClickException(
                f"{directory} has a Hugging Face config.json but no *.safetensors (swallow-trt loads only "
                "safetensors weights)."
            )
        block = hf_quantization(directory)
        if block is None:
            return CheckpointKind(HF_CHECKPOINT)
        return CheckpointKind(HF_CHECKPOINT, block.get("quant_algo"), block.get("kv_cache_quant_algo"), block)
    raise click.ClickException(
        f"{config_path} has neither 'architecture' (TRT-LLM checkpoint) nor 'architectures' (Hugging Face)."
    )
