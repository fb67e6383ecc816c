"""The pytorch-target repository: two models, `tensorrt_llm` (TensorRT-LLM's llmapi Python model, or our
CPU stand-in with the same I/O) and our front `tensorrt_llm_bls`, configs from llmapi_configs.py.

`--engine DEPLOY_DIR` (a `build --target pytorch` deployment) writes the stock llmapi model's
`config.pbtxt` and `model.yaml` (the deployment's LLM-API options); `--checkpoint HF_DIR` (a Hugging Face /
ModelOpt directory) writes the same layout with the CPU stand-in, limits from the options.

The stock llmapi model contract: `REPO/tensorrt_llm/1/` must hold `model.py` and `helpers.py` from
`triton_backend/all_models/llmapi/tensorrt_llm/1/` of the TensorRT-LLM git tag that matches the
tensorrt_llm installed on the serving host (e.g. v1.2.1 for NGC 26.07; the container does not ship
them). `--llmapi-model DIR` copies them in; without it the repository says what to copy, and
`swallow-trt serve` refuses until they are there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from triton_repo.repository import llmapi_configs
from triton_repo.repository.common import (
    DEFAULT_CPU_MAX_BATCH,
    DEFAULT_CPU_MAX_SEQ_LEN,
    MODELS_DIR,
    REPO_COMMON,
    Model,
    RepoOptions,
    repository_manifest,
    write_models,
)
from triton_repo.repository.engine_configs import BLS, ENGINE
from trt_build.build.limits import KV_CACHE_FREE_GPU_MEM_FRACTION
from trt_build.build.pytorch import read_deployment
from trt_build.common.errors import SwallowTrtError
from trt_build.source.hf_config import read_hf_config
from trt_build.source.tokenizer import FAST_TOKENIZER_FILES

LLMAPI_FRONT_FILES = (
    MODELS_DIR / "llmapi_front" / "model.py",
    *REPO_COMMON,
    MODELS_DIR / "text_deltas.py",
    MODELS_DIR / "prompt_limits.py",
    MODELS_DIR / "tensor_routes.py",
)
LLMAPI_CPU_FILES = (MODELS_DIR / "llmapi_cpu" / "model.py",)
LLMAPI_STOCK_FILES = ("model.py", "helpers.py")
STOCK_SOURCE = "triton_backend/all_models/llmapi/tensorrt_llm/1"  # in a TensorRT-LLM clone


def check_llmapi_model_dir(directory: Path) -> None:
    missing = [name for name in LLMAPI_STOCK_FILES if not (directory / name).is_file()]
    if missing:
        raise SwallowTrtError(
            f"{directory} lacks {', '.join(missing)}:",
            f"pass the `{STOCK_SOURCE}` directory of a TensorRT-LLM clone at the tag of the installed "
            "tensorrt_llm.",
        )


def missing_stock_files(repo: Path) -> list[str]:
    """The stock llmapi files a repository for a deployment still lacks ([] for other repositories)."""
    manifest = repository_manifest(repo)
    if manifest.get("target") != "pytorch" or manifest.get("backend") != "llmapi":
        return []
    return [name for name in LLMAPI_STOCK_FILES if not (repo / ENGINE / "1" / name).is_file()]


def stock_files_note(repo: Path) -> str | None:
    """What to copy before serving, when the repository was written without --llmapi-model."""
    if repository_manifest(repo).get("llmapi_model") != "missing":
        return None
    return (
        f"Note: copy model.py and helpers.py from {STOCK_SOURCE}/ of the TensorRT-LLM tag matching the "
        f"serving host's tensorrt_llm into {repo / ENGINE / '1'} (or write the repository again with "
        "--llmapi-model DIR) before serving."
    )


def _write(
    options: RepoOptions,
    checkpoint: Path,
    llm_options: dict[str, Any],
    engine_files: tuple[Path, ...],
    manifest: dict[str, Any],
) -> Path:
    """Both layouts: the llmapi model (`engine_files`, model.yaml) and our front, with its tokenizer."""
    cpu = manifest["llmapi_model"] == "cpu-stand-in"
    has_tokenizer = all((checkpoint / name).is_file() for name in FAST_TOKENIZER_FILES)
    tokenizer_for_llm = None if has_tokenizer else str(options.tokenizer_dir.resolve())
    front_batch = options.max_batch_size or int(llm_options.get("max_batch_size", DEFAULT_CPU_MAX_BATCH))
    max_seq_len = llm_options.get("max_seq_len") or read_hf_config(checkpoint).max_position_embeddings
    model_yaml = llmapi_configs.model_yaml(llm_options, str(checkpoint), tokenizer_for_llm)
    models = {
        ENGINE: Model(
            llmapi_configs.llmapi_config(cpu_stand_in=cpu),
            engine_files,
            {"model.yaml": yaml.safe_dump(model_yaml, sort_keys=False)},
        ),
        BLS: Model(
            llmapi_configs.front_config(
                front_batch, options.instances, llmapi_configs.LLMAPI_FRONT_TOKENIZER, int(max_seq_len) - 1
            ),
            LLMAPI_FRONT_FILES,
        ),
    }
    manifest = {
        **manifest,
        "checkpoint_dir": str(checkpoint),
        "tokenizer_source": str(options.tokenizer_dir.resolve()),
        "world_size": 1,  # one tritonserver; the LLM API spawns its TP/PP workers itself
        "tensor_parallel_size": int(llm_options.get("tensor_parallel_size", 1)),
        "pipeline_parallel_size": int(llm_options.get("pipeline_parallel_size", 1)),
        "models": list(models),
        "fronts": [BLS],  # the model clients call
    }
    return write_models(options, models, llmapi_configs.LLMAPI_FRONT_TOKENIZER, manifest)


def write_deployment_repository(options: RepoOptions, deploy_dir: Path) -> Path:
    """A `build --target pytorch` deployment served by TensorRT-LLM's llmapi model."""
    if (
        options.max_input_len
        or options.max_seq_len
        or options.kv_cache_reuse is not None
        or options.kv_cache_free_gpu_mem_fraction != KV_CACHE_FREE_GPU_MEM_FRACTION
    ):
        raise SwallowTrtError(
            "A pytorch deployment takes its limits and KV-cache settings from its options:",
            "drop --max-input-len/--max-seq-len/--kv-cache-*, or build the deployment again.",
        )
    deployment = read_deployment(deploy_dir)
    llm_options = dict(deployment.options)
    requested = options.max_batch_size
    if requested is not None and requested > int(llm_options.get("max_batch_size", requested)):
        raise SwallowTrtError(
            f"--max-batch-size {requested} exceeds the deployment's max_batch_size "
            f"{llm_options['max_batch_size']}."
        )
    stock = options.llmapi_model
    if stock is not None:
        check_llmapi_model_dir(stock)
    manifest = {
        "target": "pytorch",
        "backend": "llmapi",
        "llmapi_model": "copied" if stock else "missing",
        "llmapi_model_source": str(stock.resolve()) if stock else None,
        "deployment_dir": str(deployment.directory),
    }
    stock_files = tuple(stock / name for name in LLMAPI_STOCK_FILES) if stock else ()
    return _write(options, deployment.checkpoint, llm_options, stock_files, manifest)


def write_cpu_stand_in_repository(options: RepoOptions, checkpoint_dir: Path) -> Path:
    """A Hugging Face / ModelOpt checkpoint served by the CPU stand-in of the llmapi model (no GPU).
    Only --max-batch-size, --max-seq-len and --instances apply."""
    checkpoint = checkpoint_dir.resolve()
    seq_len = min(
        options.max_seq_len or DEFAULT_CPU_MAX_SEQ_LEN, read_hf_config(checkpoint).max_position_embeddings
    )
    llm_options = {"max_batch_size": options.max_batch_size or DEFAULT_CPU_MAX_BATCH, "max_seq_len": seq_len}
    manifest = {
        "target": "pytorch",
        "backend": "python-cpu-llmapi-stand-in",
        "llmapi_model": "cpu-stand-in",
        "llmapi_model_source": None,
        "deployment_dir": None,
    }
    return _write(options, checkpoint, llm_options, LLMAPI_CPU_FILES, manifest)
