"""`swallow-trt repo`: write a self-contained Triton model repository; which layout, by what the input is.

  --engine ENGINE_DIR      trtllm-build output          engine layout, C++ tensorrtllm backend
  --engine DEPLOY_DIR      `build --target pytorch`     llmapi layout, TensorRT-LLM's llmapi model
  --checkpoint CKPT_DIR    TRT-LLM checkpoint           engine layout, CPU reference engine
  --checkpoint HF_DIR      Hugging Face / ModelOpt      llmapi layout, CPU stand-in of the llmapi model

engine_repo.py writes the engine layout, llmapi_repo.py the llmapi one; common.py what both share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from triton_repo.repository.common import RepoOptions, check_tokenizer, repository_inputs
from triton_repo.repository.engine_repo import write_cpu_engine_repository, write_engine_repository
from triton_repo.repository.llmapi_repo import write_cpu_stand_in_repository, write_deployment_repository
from trt_build.build.pytorch import is_pytorch_deployment
from trt_build.common.errors import SwallowTrtError
from trt_build.common.outdir import check_output
from trt_build.formats.kinds import HF_CHECKPOINT, checkpoint_kind

Writer = Callable[[RepoOptions, Path], Path]


def choose_writer(options: RepoOptions) -> tuple[Writer, Path]:
    """The writer for the kind of input directory, and that directory."""
    if options.engine_dir is not None:
        deployment = is_pytorch_deployment(options.engine_dir)
        return (write_deployment_repository if deployment else write_engine_repository), options.engine_dir
    assert options.checkpoint_dir is not None  # write_repository checked that one of the two is given
    hf = checkpoint_kind(options.checkpoint_dir).kind == HF_CHECKPOINT
    return (write_cpu_stand_in_repository if hf else write_cpu_engine_repository), options.checkpoint_dir


def write_repository(options: RepoOptions) -> Path:
    """Write the repository atomically; returns `options.output`."""
    if (options.engine_dir is None) == (options.checkpoint_dir is None):
        raise SwallowTrtError("Pass exactly one of --engine ENGINE_DIR or --checkpoint CKPT_DIR.")
    check_output(options.output, options.overwrite, repository_inputs(options))
    check_tokenizer(options.tokenizer_dir)
    writer, source = choose_writer(options)
    return writer(options, source)
