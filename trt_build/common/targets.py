"""Which TensorRT-LLM target to build for, and what kind of checkpoint a directory holds.

Two targets (docs/architecture.md §2):
  engine   TRT-LLM checkpoint -> trtllm-build -> TensorRT engine -> Triton C++ `tensorrtllm` backend.
  pytorch  HF / ModelOpt unified checkpoint -> LLM-API options -> Triton `llmapi` model or trtllm-serve.

`--target auto` reads the installed tensorrt_llm version (docs/upstream-2026.md §1.2):
  <= 1.3.0rc20 (the last release with trtllm-build; 1.2.1 is the newest stable and NGC 26.07's) -> engine
  >  1.3.0rc20 (1.3.0rc21 and later: the TensorRT backend and trtllm-build are removed)   -> pytorch
  not installed -> pytorch: it runs on every release from 1.0 on (where PyTorch became the default
                  backend), the 1.2.1 of NGC 26.07 included, while an engine must be built on the GPU host
                  with the exact TensorRT-LLM version that serves it. Pass --target engine for engines.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from trt_build.common.errors import SwallowTrtError

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
        raise SwallowTrtError(
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
        print(f"--target auto: {choice.target} ({choice.reason})", file=sys.stderr)
    return choice.target
