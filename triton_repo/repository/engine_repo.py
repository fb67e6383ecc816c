"""The engine-target repository: five models, each `config.pbtxt` printed from engine_configs.py.

  ensemble, tensorrt_llm_bls   the front (one Python BLS model under both names): clients call these
  preprocessing                text or chat -> token ids, refused by size first
  tensorrt_llm                 the engine: ids in, ids out
  postprocessing               ids -> text, stateless; kept for clients that call it directly

`--engine ENGINE_DIR` (trtllm-build output) is served by the C++ tensorrtllm backend, whose limits come
from the engine build; `--checkpoint CKPT_DIR` (a TRT-LLM checkpoint) by the CPU reference engine, a
Python model in `tensorrt_llm/1/`, whose limits the options set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from triton_repo.repository import engine_configs
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
from triton_repo.repository.engine_configs import BLS, ENGINE, ENSEMBLE, FRONTS, POST, PRE, RepoSettings
from trt_build.common.errors import SwallowTrtError
from trt_build.formats.trtllm_config import (
    CheckpointError,
    architecture_from_checkpoint,
    read_checkpoint_config,
)

TOKENIZER_SUBDIR = "preprocessing/tokenizer"  # relative to the repository root
FRONT_FILES = (
    MODELS_DIR / BLS / "model.py",
    *REPO_COMMON,
    MODELS_DIR / "detokenizer.py",
    MODELS_DIR / "front_stream.py",
    MODELS_DIR / "tensor_routes.py",
)

# model -> files copied into its version directory 1/ (beside model.py)
MODEL_FILES: dict[str, tuple[Path, ...]] = {
    ENSEMBLE: FRONT_FILES,
    PRE: (
        MODELS_DIR / PRE / "model.py",
        *REPO_COMMON,
        MODELS_DIR / "prompt_limits.py",
        MODELS_DIR / "tensor_routes.py",
    ),
    POST: (MODELS_DIR / POST / "model.py", *REPO_COMMON),
    BLS: FRONT_FILES,
}
CPU_ENGINE_FILES = (MODELS_DIR / ENGINE / "model.py",)


@dataclass(frozen=True)
class EngineFacts:
    """What the repository takes from an engine's config.json."""

    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    world_size: int
    paged_context_fmha: bool


def _read_engine_config(engine_dir: Path) -> dict[str, Any]:
    path = engine_dir / "config.json"
    if not path.is_file():
        raise SwallowTrtError(
            f"{path} not found: is {engine_dir} a TensorRT-LLM engine directory (trtllm-build output)?"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SwallowTrtError(f"{path} is not valid JSON ({error}).") from None


def engine_facts(engine_dir: Path) -> EngineFacts:
    """Batch and length limits, world size and paged-context FMHA from an engine's config.json."""
    config = _read_engine_config(engine_dir)
    build = config.get("build_config")
    if not isinstance(build, dict) or "max_batch_size" not in build:
        raise SwallowTrtError(
            f"{engine_dir / 'config.json'} has no build_config.max_batch_size: is it an engine directory "
            "(trtllm-build output) rather than a checkpoint?",
            "Use --checkpoint for checkpoints.",
        )
    mapping = config.get("pretrained_config", {}).get("mapping", {})
    world_size = int(
        mapping.get("world_size") or int(mapping.get("tp_size", 1)) * int(mapping.get("pp_size", 1))
    )
    engines = sorted(engine_dir.glob("rank*.engine"))
    if len(engines) != world_size:
        raise SwallowTrtError(
            f"{engine_dir} holds {len(engines)} rank*.engine files but its config.json says world size "
            f"{world_size}.",
            "Rebuild the engine or point --engine at the complete directory.",
        )
    max_seq_len = int(build.get("max_seq_len") or 0)
    return EngineFacts(
        max_batch_size=int(build["max_batch_size"]),
        max_input_len=int(build.get("max_input_len") or max_seq_len),
        max_seq_len=max_seq_len,
        world_size=world_size,
        paged_context_fmha=bool(build.get("plugin_config", {}).get("use_paged_context_fmha", False)),
    )


def _refuse_llmapi_model(options: RepoOptions) -> None:
    if options.llmapi_model is not None:
        raise SwallowTrtError("--llmapi-model is for pytorch deployments (build --target pytorch).")


def _engine_settings(options: RepoOptions, engine_dir: Path, facts: EngineFacts) -> RepoSettings:
    """The C++ backend's settings: the engine's limits, checked against what the options ask for."""
    if options.max_batch_size is not None and options.max_batch_size > facts.max_batch_size:
        raise SwallowTrtError(
            f"--max-batch-size {options.max_batch_size} exceeds the engine's max_batch_size "
            f"{facts.max_batch_size}."
        )
    if options.kv_cache_reuse and not facts.paged_context_fmha:
        raise SwallowTrtError(
            "--kv-cache-reuse needs an engine built with --use_paged_context_fmha enable;",
            "rebuild it or pass --no-kv-cache-reuse.",
        )
    if options.max_input_len or options.max_seq_len:
        raise SwallowTrtError("--max-input-len/--max-seq-len come from the engine build; drop them.")
    return RepoSettings(
        max_batch_size=options.max_batch_size or facts.max_batch_size,
        max_input_len=facts.max_input_len,
        max_seq_len=facts.max_seq_len,
        tokenizer_dir=TOKENIZER_SUBDIR,
        engine_dir=str(engine_dir),
        instances=options.instances,
        kv_cache_free_gpu_mem_fraction=options.kv_cache_free_gpu_mem_fraction,
        kv_cache_reuse=facts.paged_context_fmha if options.kv_cache_reuse is None else options.kv_cache_reuse,
        chunked_context=facts.paged_context_fmha,
    )


def checkpoint_max_position_embeddings(checkpoint_dir: Path) -> int:
    """The longest sequence a TRT-LLM checkpoint's model was trained for (caps the CPU engine's)."""
    try:
        return architecture_from_checkpoint(read_checkpoint_config(checkpoint_dir)).max_position_embeddings
    except (CheckpointError, KeyError) as error:
        raise SwallowTrtError(
            f"{checkpoint_dir} is not a TensorRT-LLM Llama checkpoint ({error}).",
            "Make one with `swallow-trt convert`.",
        ) from None


def _cpu_settings(options: RepoOptions, checkpoint_dir: Path) -> RepoSettings:
    """The CPU reference engine's settings: the options' limits, capped by the model's."""
    max_position = checkpoint_max_position_embeddings(checkpoint_dir)
    seq_len = min(options.max_seq_len or DEFAULT_CPU_MAX_SEQ_LEN, max_position)
    return RepoSettings(
        max_batch_size=options.max_batch_size or DEFAULT_CPU_MAX_BATCH,
        max_input_len=min(options.max_input_len or seq_len // 2, seq_len - 1),
        max_seq_len=seq_len,
        tokenizer_dir=TOKENIZER_SUBDIR,
        checkpoint_dir=str(checkpoint_dir),
        instances=options.instances,
        kv_cache_reuse=False,
    )


def _write(options: RepoOptions, settings: RepoSettings, world_size: int) -> Path:
    cpu = settings.engine_dir is None
    engine_files = CPU_ENGINE_FILES if cpu else ()  # the C++ backend needs no model.py
    models = {
        name: Model(config, MODEL_FILES.get(name, engine_files if name == ENGINE else ()))
        for name, config in engine_configs.all_configs(settings).items()
    }
    manifest = {
        "target": "checkpoint" if cpu else "engine",
        "backend": "python-cpu-reference" if cpu else "tensorrtllm",
        "engine_dir": settings.engine_dir,
        "checkpoint_dir": settings.checkpoint_dir,
        "tokenizer_source": str(options.tokenizer_dir.resolve()),
        "world_size": world_size,
        "models": list(models),
        "fronts": list(FRONTS),  # the models clients call
        "settings": asdict(settings),
    }
    return write_models(options, models, TOKENIZER_SUBDIR, manifest)


def write_engine_repository(options: RepoOptions, engine_dir: Path) -> Path:
    """An engine (trtllm-build output) served by the C++ tensorrtllm backend."""
    _refuse_llmapi_model(options)
    engine_dir = engine_dir.resolve()
    facts = engine_facts(engine_dir)
    return _write(options, _engine_settings(options, engine_dir, facts), facts.world_size)


def write_cpu_engine_repository(options: RepoOptions, checkpoint_dir: Path) -> Path:
    """A TRT-LLM checkpoint served by the CPU reference engine (no GPU needed)."""
    _refuse_llmapi_model(options)
    checkpoint_dir = checkpoint_dir.resolve()
    return _write(options, _cpu_settings(options, checkpoint_dir), world_size=1)


def repository_world_size(repo: Path) -> int:
    """World size recorded by `swallow-trt repo` (1 for the CPU engines); for a repository without a
    manifest, the engine's named in its tensorrt_llm config."""
    if (repo / "manifest.json").is_file():
        return int(repository_manifest(repo).get("world_size", 1))
    config = engine_configs.parse((repo / ENGINE / "config.pbtxt").read_text())
    if config.backend == "tensorrtllm":
        return engine_facts(Path(config.parameters["gpt_model_path"].string_value)).world_size
    return 1
