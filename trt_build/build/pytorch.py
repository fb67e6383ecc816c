"""The pytorch target of `swallow-trt build`: a deployment directory for TensorRT-LLM's PyTorch backend.

Nothing is compiled: the PyTorch backend loads the HF / ModelOpt checkpoint itself. The deployment is
  llm_api_options.yaml  the LLM-API options tuned for the GPU and checkpoint (llmapi_options.RULES)
  manifest.json         target "pytorch", the checkpoint (absolute path, kind, quantization, config
                        hashes), the options with a reason per key, and the exact trtllm-serve command.
The checkpoint is referenced by its absolute path, not copied or linked: weights are tens of GB, and a
link breaks as silently as a path when the checkpoint moves. Moving the checkpoint means building again
(a second). `swallow-trt repo --engine DEPLOY_DIR` and `swallow-trt serve --via trtllm-serve` read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trt_build.build.llmapi_options import (
    OPTIONS_FILE,
    PYTORCH_QUANT_ALGOS,
    OptionsRequest,
    compose_options,
    explain,
    trtllm_serve_argv,
)
from trt_build.common.console import say
from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import sha256_file, write_manifest
from trt_build.common.outdir import atomic_output_dir, check_output
from trt_build.formats.kinds import HF_CHECKPOINT, CheckpointKind, checkpoint_kind
from trt_build.source.tokenizer import FAST_TOKENIZER_FILES


def read_pytorch_checkpoint(checkpoint: Path) -> CheckpointKind:
    """The kind and quantization of a Hugging Face / ModelOpt checkpoint; a TRT-LLM one is refused."""
    kind = checkpoint_kind(checkpoint)
    if kind.kind != HF_CHECKPOINT:
        raise SwallowTrtError(
            f"{checkpoint} is a TRT-LLM checkpoint (engine target). The pytorch target loads a Hugging Face "
            "or ModelOpt unified checkpoint:",
            "pass the HF model directory, or `swallow-trt convert --target pytorch` output; or build an "
            "engine with --target engine.",
        )
    return kind


def checkpoint_facts(checkpoint: Path, kind: CheckpointKind) -> dict[str, Any]:
    """The manifest's `checkpoint` block of a deployment: where it is, what it holds, its configs' hashes."""
    quant_file = checkpoint / "hf_quant_config.json"
    return {
        "path": str(checkpoint),
        "kind": kind.kind,
        "quant_algo": kind.quant_algo,
        "quant_description": PYTORCH_QUANT_ALGOS[kind.quant_algo],
        "kv_cache_quant_algo": kind.kv_cache_quant_algo,
        "config_sha256": sha256_file(checkpoint / "config.json"),
        "hf_quant_config_sha256": sha256_file(quant_file) if quant_file.is_file() else None,
    }


def options_yaml(options: dict[str, Any]) -> str:
    return yaml.safe_dump(options, sort_keys=False, default_flow_style=False)


def build_deployment(
    checkpoint: Path,
    output: Path,
    request: OptionsRequest,
    kind: CheckpointKind,
    overwrite: bool,
    dry_run: bool,
    choice: dict[str, Any] | None = None,
) -> str:
    """Write the deployment directory, refusing impossible combinations; returns what to tell the user
    (with `dry_run`, the options with their reasons, and nothing is written). `choice`: the deployment
    choice it carries out (its file, settings and predictions), recorded in the manifest."""
    composition = compose_options(request)
    if composition.refusals:
        raise SwallowTrtError(" ".join(composition.refusals))
    checkpoint = checkpoint.resolve()
    final_options = str(output.resolve() / OPTIONS_FILE)
    serve = trtllm_serve_argv(str(checkpoint), final_options, request.tp, request.pp)
    text = options_yaml(composition.options)
    if dry_run:
        return explain(composition, text, serve)
    check_output(output, overwrite, [checkpoint])
    for warning in composition.warnings:
        say(f"Warning: {warning}", err=True)
    if not all((checkpoint / name).is_file() for name in FAST_TOKENIZER_FILES):
        say(
            f"Warning: {checkpoint} has no tokenizer.json/tokenizer_config.json; trtllm-serve and the llmapi "
            "model load the tokenizer from the checkpoint directory: copy it there.",
            err=True,
        )
    with atomic_output_dir(output, overwrite, [checkpoint]) as tmp:
        (tmp / OPTIONS_FILE).write_text(text)
        write_manifest(
            tmp,
            "build",
            target="pytorch",
            options_file=OPTIONS_FILE,
            options=composition.options,
            option_reasons=[{"options": values, "reason": reason} for values, reason in composition.reasons],
            warnings=composition.warnings,
            trtllm_serve_command=serve,
            tp=request.tp,
            pp=request.pp,
            choice=choice,
            gpu_profile=request.gpu.as_dict(),
            checkpoint=checkpoint_facts(checkpoint, kind),
        )
    return (
        f"Deployment written to {output} (PyTorch backend, nothing compiled).\n"
        f"  Triton:       swallow-trt repo --engine {output} --tokenizer {checkpoint} --output REPO\n"
        f"  trtllm-serve: swallow-trt serve --via trtllm-serve --deploy {output}"
    )


@dataclass(frozen=True)
class Deployment:
    """A pytorch-target deployment directory as `build --target pytorch` wrote it."""

    directory: Path
    options: dict[str, Any]
    options_path: Path
    checkpoint: Path
    tp: int
    pp: int
    manifest: dict[str, Any]


def is_pytorch_deployment(directory: Path) -> bool:
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("target") == "pytorch"
    except json.JSONDecodeError:
        return False


def read_deployment(directory: Path) -> Deployment:
    """The deployment, after checking its options file and that its checkpoint is still there."""
    manifest_path = directory / "manifest.json"
    if not is_pytorch_deployment(directory):
        raise SwallowTrtError(
            f"{directory} is not a pytorch-target deployment (manifest.json with target 'pytorch'):",
            "write one with `swallow-trt build --target pytorch`.",
        )
    manifest = json.loads(manifest_path.read_text())
    options_path = directory / manifest.get("options_file", OPTIONS_FILE)
    if not options_path.is_file():
        raise SwallowTrtError(f"{options_path} is missing:", "build the deployment again.")
    options = yaml.safe_load(options_path.read_text()) or {}
    checkpoint = Path(manifest["checkpoint"]["path"])
    if not (checkpoint / "config.json").is_file():
        raise SwallowTrtError(
            f"The deployment's checkpoint {checkpoint} is gone (moved or deleted):",
            "build again with `swallow-trt build --target pytorch --checkpoint NEW_PATH ...`.",
        )
    return Deployment(
        directory=directory.resolve(),
        options=options,
        options_path=options_path.resolve(),
        checkpoint=checkpoint,
        tp=int(options.get("tensor_parallel_size", manifest.get("tp", 1))),
        pp=int(options.get("pipeline_parallel_size", manifest.get("pp", 1))),
        manifest=manifest,
    )
