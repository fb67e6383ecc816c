"""`swallow-trt build`: the options checked against the target, turned into its request, and built.

  engine   a TRT-LLM checkpoint -> trtllm-build -> an engine directory (engine.py). TP, PP and the KV
           cache format were fixed at conversion, so the checkpoint's are used and others refused.
  pytorch  a Hugging Face / ModelOpt checkpoint -> a deployment directory of LLM-API options
           (pytorch.py); nothing is compiled.
`--target auto` picks one by the installed TensorRT-LLM version (common/targets.py). `--choice` (pytorch)
takes the settings of a deployment choice (`plan ... --save`) through build/choice.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trt_build.build.choice import BUILD_FLAGS, check_build_flags, options_request_for_role
from trt_build.build.engine import build_engine, read_checkpoint
from trt_build.build.limits import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    GPUS_PER_NODE,
)
from trt_build.build.llmapi_options import OptionsRequest
from trt_build.build.pytorch import build_deployment, read_pytorch_checkpoint
from trt_build.build.trtllm_build_rules import BuildRequest
from trt_build.common.errors import SwallowTrtError, UsageError
from trt_build.common.gpus import GpuProfile, get_profile
from trt_build.common.manifest import sha256_file
from trt_build.common.targets import resolve_target
from trt_build.plan.deployment import load_choice
from trt_build.source.hf_config import LlamaArchitecture, read_hf_config


@dataclass(frozen=True)
class BuildOptions:
    """What `swallow-trt build` is asked for (None: the target's default)."""

    checkpoint: Path
    output: Path
    gpu_name: str | None  # None only with `choice` (its GPU)
    gpu: GpuProfile | None = None  # the profile itself, when `plan` made one (--gpu-memory-gb)
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    max_input_len: int | None = None  # engine only; None: max_seq_len
    max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS
    workers: int | None = None  # engine only; None: the ranks on this node
    target: str = "engine"  # engine, pytorch or auto
    tp: int | None = None  # pytorch: the parallelism; engine: must match the checkpoint's
    pp: int | None = None
    kv_cache_dtype: str = "auto"  # pytorch: auto = the checkpoint's KV format, fp8 = force FP8
    overwrite: bool = False
    dry_run: bool = False
    choice: Path | None = None  # pytorch: a deployment choice (`plan ... --save`) that sets the limits
    explicit: frozenset[str] = frozenset()  # fields the command line set (checked against `choice`)


def engine_request(
    options: BuildOptions,
    quant_algo: str | None,
    kv_cache_quant_algo: str | None,
    tp: int,
    pp: int,
    gpus_per_node: int = GPUS_PER_NODE,
) -> BuildRequest:
    """What trtllm-build is asked for: the options, and a checkpoint's quantization and mapping (`plan`
    passes those of the checkpoint `convert` would write)."""
    return BuildRequest(
        checkpoint_dir=str(options.checkpoint),
        output_dir=str(options.output),
        gpu=options.gpu or get_profile(options.gpu_name),
        quant_algo=quant_algo,
        kv_cache_quant_algo=kv_cache_quant_algo,
        tp=tp,
        pp=pp,
        max_seq_len=options.max_seq_len,
        max_batch_size=options.max_batch_size,
        max_input_len=options.max_input_len,
        max_num_tokens=options.max_num_tokens,
        workers=options.workers,
        gpus_per_node=gpus_per_node,
    )


def deployment_request(
    options: BuildOptions,
    arch: LlamaArchitecture,
    quant_algo: str | None,
    checkpoint_kv_cache_quant_algo: str | None,
) -> OptionsRequest:
    """What the LLM-API options are composed for: the options, and a checkpoint's shape and quantization
    (`plan` passes those of the checkpoint it plans)."""
    return OptionsRequest(
        arch=arch,
        gpu=options.gpu or get_profile(options.gpu_name),
        quant_algo=quant_algo,
        checkpoint_kv_cache_quant_algo=checkpoint_kv_cache_quant_algo,
        tp=options.tp or 1,
        pp=options.pp or 1,
        kv_cache_dtype=options.kv_cache_dtype,
        max_batch_size=options.max_batch_size,
        max_seq_len=options.max_seq_len,
        max_num_tokens=options.max_num_tokens,
    )


def build_engine_target(options: BuildOptions) -> str:
    """A TRT-LLM checkpoint built with trtllm-build, with the checkpoint's own mapping and KV format."""
    if options.choice is not None:
        raise UsageError(
            "--choice sizes a PyTorch-backend deployment (the engine target takes its settings from the "
            "checkpoint);",
            "build with --target pytorch from a Hugging Face / ModelOpt checkpoint.",
        )
    settings = read_checkpoint(options.checkpoint)
    for option, given, converted in (("--tp", options.tp, settings.tp), ("--pp", options.pp, settings.pp)):
        if given is not None and given != converted:
            raise SwallowTrtError(
                f"{option} {given}: this TRT-LLM checkpoint was converted for {option} {converted} (engines take "
                "their mapping from the checkpoint);",
                "convert again, or leave the option out.",
            )
    if options.kv_cache_dtype != "auto":
        raise SwallowTrtError(
            "--kv-cache-dtype is fixed at conversion for engines:",
            "`swallow-trt convert --kv-cache-dtype fp8`.",
        )
    request = engine_request(
        options,
        settings.quant_algo,
        settings.kv_cache_quant_algo,
        settings.tp,
        settings.pp,
        settings.gpus_per_node,
    )
    return build_engine(request, options.output, options.overwrite, options.dry_run)


def build_pytorch_target(options: BuildOptions) -> str:
    """A deployment of LLM-API options for a Hugging Face / ModelOpt checkpoint."""
    if options.max_input_len is not None or options.workers is not None:
        raise SwallowTrtError("--max-input-len and --workers are engine-target options;", "drop them.")
    kind = read_pytorch_checkpoint(options.checkpoint)
    arch = read_hf_config(options.checkpoint)
    if options.choice is None:
        request = deployment_request(options, arch, kind.quant_algo, kind.kv_cache_quant_algo)
        return build_deployment(
            options.checkpoint, options.output, request, kind, options.overwrite, options.dry_run
        )
    choice = load_choice(options.choice)
    given = {name: getattr(options, name) for name in sorted(options.explicit) if name in BUILD_FLAGS}
    check_build_flags(choice, options.choice, given)
    request = options_request_for_role(choice, "agg", arch, kind)
    record = {
        "file": str(options.choice.resolve()),
        "sha256": sha256_file(options.choice),
        **choice.to_dict(),
    }
    return build_deployment(
        options.checkpoint, options.output, request, kind, options.overwrite, options.dry_run, record
    )


BUILDERS: dict[str, Callable[[BuildOptions], str]] = {
    "engine": build_engine_target,
    "pytorch": build_pytorch_target,
}


def run_build(options: BuildOptions) -> str:
    """Build for the requested target (auto: by the installed TensorRT-LLM); returns what to print."""
    if options.gpu_name is None and options.gpu is None and options.choice is None:
        raise UsageError("--gpu is required (unless --choice names the GPU).")
    return BUILDERS[resolve_target(options.target)](options)
