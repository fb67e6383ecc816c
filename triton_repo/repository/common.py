"""What both repository writers share: the options, the tokenizer check and copy, and the one writer of
a model directory (config.pbtxt, the code copied beside `model.py`, the manifest) that appears whole or
not at all.

Python models run inside tritonserver where swallow-trt is not installed, so every helper module a
`model.py` imports is copied into its version directory `1/`. The tokenizer is copied into the
repository and named by a path relative to the repository root, so the repository can move.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.repository.engine_configs import render
from trt_build.build.limits import KV_CACHE_FREE_GPU_MEM_FRACTION
from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import describe_files, write_manifest
from trt_build.common.outdir import atomic_output_dir
from trt_build.source import tokenizer, tokenizer_loading

MODELS_DIR = Path(__file__).parents[1] / "models"
# repo_common.py and what it imports: beside every model.py that imports repo_common
REPO_COMMON = (MODELS_DIR / "repo_common.py", Path(tokenizer_loading.__file__))
TOKENIZER_FILES = (
    *tokenizer.TOKENIZER_FILES,
    tokenizer.GENERATION_CONFIG,
)  # copied into preprocessing/tokenizer

# The CPU engines (reference engine, llmapi stand-in) when the command line does not say.
DEFAULT_CPU_MAX_BATCH = 32
DEFAULT_CPU_MAX_SEQ_LEN = 8192


@dataclass(frozen=True)
class RepoOptions:
    """What `swallow-trt repo` is asked for. Exactly one of `engine_dir` (an engine, or a `build --target
    pytorch` deployment) and `checkpoint_dir` (a TRT-LLM or a Hugging Face / ModelOpt checkpoint)."""

    output: Path
    tokenizer_dir: Path
    engine_dir: Path | None = None
    checkpoint_dir: Path | None = None
    max_batch_size: int | None = None
    instances: int = 1
    kv_cache_free_gpu_mem_fraction: float = KV_CACHE_FREE_GPU_MEM_FRACTION
    kv_cache_reuse: bool | None = None
    max_input_len: int | None = None
    max_seq_len: int | None = None
    overwrite: bool = False
    llmapi_model: Path | None = None


def repository_inputs(options: RepoOptions) -> list[Path]:
    """The directories `repo` reads, which its output must not overlap."""
    given = (options.engine_dir, options.checkpoint_dir, options.tokenizer_dir, options.llmapi_model)
    return [path for path in given if path is not None]


@dataclass(frozen=True)
class Model:
    """One model directory: its config, the files copied into `1/`, and text files written into `1/`."""

    config: mc.ModelConfig
    copied: tuple[Path, ...] = ()
    written: dict[str, str] = field(default_factory=dict)


def check_tokenizer(tokenizer_dir: Path) -> None:
    if (
        not (tokenizer_dir / "tokenizer_config.json").is_file()
        or not (tokenizer_dir / "tokenizer.json").is_file()
    ):
        raise SwallowTrtError(
            f"{tokenizer_dir} is not a Hugging Face tokenizer directory (tokenizer.json and "
            "tokenizer_config.json).",
            "Pass the model directory, or build one with `swallow-trt tokenizer --output`.",
        )


def copy_tokenizer(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)


def write_models(
    options: RepoOptions, models: dict[str, Model], tokenizer_subdir: str, manifest: dict[str, Any]
) -> Path:
    """Write `models`, the tokenizer into `tokenizer_subdir` and `manifest.json` (`manifest` plus the
    files written, with their sha256) atomically into `options.output`; returns it."""
    with atomic_output_dir(options.output, options.overwrite, repository_inputs(options)) as tmp:
        for name, model in models.items():
            version = tmp / name / "1"
            version.mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(render(model.config))
            for source in model.copied:
                shutil.copy2(source, version / source.name)
            for file_name, text in model.written.items():
                (version / file_name).write_text(text)
        copy_tokenizer(options.tokenizer_dir, tmp / tokenizer_subdir)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        write_manifest(tmp, "repo", **manifest, files=describe_files(files, tmp))
    return options.output


def repository_manifest(repo: Path) -> dict[str, Any]:
    """The manifest `swallow-trt repo` wrote ({} for a repository written by hand)."""
    manifest = repo / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {}
