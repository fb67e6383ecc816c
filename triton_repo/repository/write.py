"""`swallow-trt repo`: write a self-contained Triton model repository for an engine or a checkpoint.

Layout: the five models, each `config.pbtxt` printed from a `ModelConfig` message; the Python models'
code with the helper modules they import copied beside `model.py` (they run where swallow-trt is not
installed); the tokenizer copied into `preprocessing/tokenizer` and named by a path relative to the
repository root; `manifest.json`. `--engine` serves with the C++ tensorrtllm backend, `--checkpoint`
with the CPU reference engine.

The pytorch target (llmapi_configs.py) has its own layout of two models: `--engine DEPLOY_DIR` (a
`build --target pytorch` deployment) writes `tensorrt_llm` for TensorRT-LLM's stock llmapi model plus our
front `tensorrt_llm_bls`; `--checkpoint HF_DIR` (a Hugging Face / ModelOpt directory rather than a TRT-LLM
checkpoint) writes the same layout with the CPU stand-in of the llmapi model.

The stock llmapi model contract: `REPO/tensorrt_llm/1/` must hold `model.py` and `helpers.py` from
`triton_backend/all_models/llmapi/tensorrt_llm/1/` of the TensorRT-LLM git tag that matches the
tensorrt_llm installed on the serving host (e.g. v1.2.1 for NGC 26.07; the container does not ship
them). `--llmapi-model DIR` copies them in; without it the repository says what to copy, and
`swallow-trt serve` refuses until they are there. We write `model.yaml` and `config.pbtxt` beside them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import yaml

from triton_repo.repository import engine_configs as model_configs
from triton_repo.repository import llmapi_configs
from triton_repo.repository.engine_configs import BLS, ENGINE, POST, PRE, RepoSettings
from trt_build.build.pytorch import Deployment, is_pytorch_deployment, read_deployment
from trt_build.common.manifest import describe_files, write_manifest
from trt_build.common.outdir import atomic_output_dir, refuse_existing
from trt_build.common.targets import HF_CHECKPOINT, checkpoint_kind
from trt_build.source.hf_config import read_hf_config

MODELS_DIR = Path(__file__).parents[1] / "models"
DETOKENIZER = MODELS_DIR / "detokenizer.py"
TOKENIZER_SUBDIR = "preprocessing/tokenizer"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)

# model -> files copied into its version directory 1/ (beside model.py)
MODEL_FILES: dict[str, tuple[Path, ...]] = {
    PRE: (MODELS_DIR / PRE / "model.py", MODELS_DIR / "repo_common.py"),
    POST: (MODELS_DIR / POST / "model.py", MODELS_DIR / "repo_common.py", DETOKENIZER),
    BLS: (MODELS_DIR / BLS / "model.py", MODELS_DIR / "repo_common.py", DETOKENIZER),
}
CPU_ENGINE_FILES = (MODELS_DIR / ENGINE / "model.py",)
LLMAPI_FRONT_FILES = (
    MODELS_DIR / "llmapi_front" / "model.py",
    MODELS_DIR / "repo_common.py",
    MODELS_DIR / "text_deltas.py",
)
LLMAPI_CPU_FILES = (MODELS_DIR / "llmapi_cpu" / "model.py",)
LLMAPI_STOCK_FILES = ("model.py", "helpers.py")

DEFAULT_CPU_MAX_BATCH = 32
DEFAULT_CPU_MAX_SEQ_LEN = 8192


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise click.ClickException(f"{path} not found: is {path.parent} {what}?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise click.ClickException(f"{path} is not valid JSON ({error}).") from None


def engine_facts(engine_dir: Path) -> dict[str, Any]:
    """Batch and length limits, world size and paged-context FMHA from an engine's config.json."""
    config = _read_json(engine_dir / "config.json", "a TensorRT-LLM engine directory (trtllm-build output)")
    build = config.get("build_config")
    if not isinstance(build, dict) or "max_batch_size" not in build:
        raise click.ClickException(
            f"{engine_dir / 'config.json'} has no build_config.max_batch_size: is it an engine directory "
            "(trtllm-build output) rather than a checkpoint? Use --checkpoint for checkpoints."
        )
    mapping = config.get("pretrained_config", {}).get("mapping", {})
    world_size = int(
        mapping.get("world_size") or int(mapping.get("tp_size", 1)) * int(mapping.get("pp_size", 1))
    )
    engines = sorted(engine_dir.glob("rank*.engine"))
    if len(engines) != world_size:
        raise click.ClickException(
            f"{engine_dir} holds {len(engines)} rank*.engine files but its config.json says world size "
            f"{world_size}. Rebuild the engine or point --engine at the complete directory."
        )
    max_seq_len = int(build.get("max_seq_len") or 0)
    return {
        "max_batch_size": int(build["max_batch_size"]),
        "max_input_len": int(build.get("max_input_len") or max_seq_len),
        "max_seq_len": max_seq_len,
        "world_size": world_size,
        "paged_context_fmha": bool(build.get("plugin_config", {}).get("use_paged_context_fmha", False)),
    }


def checkpoint_facts(checkpoint_dir: Path) -> dict[str, Any]:
    config = _read_json(
        checkpoint_dir / "config.json", "a TensorRT-LLM checkpoint (swallow-trt convert output)"
    )
    if "architecture" not in config or not list(checkpoint_dir.glob("rank*.safetensors")):
        raise click.ClickException(
            f"{checkpoint_dir} is not a TensorRT-LLM checkpoint (needs config.json with 'architecture' and "
            "rank*.safetensors). Make one with `swallow-trt convert`."
        )
    return {"max_position_embeddings": int(config.get("max_position_embeddings") or DEFAULT_CPU_MAX_SEQ_LEN)}


def check_tokenizer(tokenizer_dir: Path) -> None:
    if (
        not (tokenizer_dir / "tokenizer_config.json").is_file()
        or not (tokenizer_dir / "tokenizer.json").is_file()
    ):
        raise click.ClickException(
            f"{tokenizer_dir} is not a Hugging Face tokenizer directory (tokenizer.json and "
            "tokenizer_config.json). Pass the model directory, or build one with `swallow-trt tokenizer --output`."
        )


def _copy_tokenizer(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)


def write_repository(
    output: Path,
    tokenizer_dir: Path,
    engine_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    max_batch_size: int | None = None,
    instances: int = 1,
    kv_cache_free_gpu_mem_fraction: float = 0.9,
    kv_cache_reuse: bool | None = None,
    max_input_len: int | None = None,
    max_seq_len: int | None = None,
    overwrite: bool = False,
    llmapi_model: Path | None = None,
) -> Path:
    """Write the repository atomically; returns `output`."""
    if (engine_dir is None) == (checkpoint_dir is None):
        raise click.ClickException("Pass exactly one of --engine ENGINE_DIR or --checkpoint CKPT_DIR.")
    refuse_existing(output, overwrite)
    check_tokenizer(tokenizer_dir)
    llmapi_args = dict(max_batch_size=max_batch_size, instances=instances, overwrite=overwrite)
    if engine_dir is not None and is_pytorch_deployment(engine_dir):
        if (
            max_input_len
            or max_seq_len
            or kv_cache_reuse is not None
            or kv_cache_free_gpu_mem_fraction != 0.9
        ):
            raise click.ClickException(
                "A pytorch deployment takes its limits and KV-cache settings from its options: drop "
                "--max-input-len/--max-seq-len/--kv-cache-*, or build the deployment again."
            )
        return write_llmapi_repository(
            output,
            tokenizer_dir,
            deployment=read_deployment(engine_dir),
            llmapi_model=llmapi_model,
            **llmapi_args,
        )
    if checkpoint_dir is not None and checkpoint_kind(checkpoint_dir).kind == HF_CHECKPOINT:
        return write_llmapi_repository(
            output, tokenizer_dir, hf_checkpoint=checkpoint_dir, max_seq_len=max_seq_len, **llmapi_args
        )
    if llmapi_model is not None:
        raise click.ClickException("--llmapi-model is for pytorch deployments (build --target pytorch).")
    world_size = 1
    if engine_dir is not None:
        engine_dir = engine_dir.resolve()
        facts = engine_facts(engine_dir)
        if max_batch_size is not None and max_batch_size > facts["max_batch_size"]:
            raise click.ClickException(
                f"--max-batch-size {max_batch_size} exceeds the engine's max_batch_size {facts['max_batch_size']}."
            )
        if kv_cache_reuse and not facts["paged_context_fmha"]:
            raise click.ClickException(
                "--kv-cache-reuse needs an engine built with --use_paged_context_fmha enable; rebuild it or "
                "pass --no-kv-cache-reuse."
            )
        if max_input_len or max_seq_len:
            raise click.ClickException("--max-input-len/--max-seq-len come from the engine build; drop them.")
        world_size = facts["world_size"]
        settings = RepoSettings(
            max_batch_size=max_batch_size or facts["max_batch_size"],
            max_input_len=facts["max_input_len"],
            max_seq_len=facts["max_seq_len"],
            tokenizer_dir=TOKENIZER_SUBDIR,
            engine_dir=str(engine_dir),
            instances=instances,
            kv_cache_free_gpu_mem_fraction=kv_cache_free_gpu_mem_fraction,
            kv_cache_reuse=facts["paged_context_fmha"] if kv_cache_reuse is None else kv_cache_reuse,
            chunked_context=facts["paged_context_fmha"],
        )
    else:
        checkpoint_dir = checkpoint_dir.resolve()
        facts = checkpoint_facts(checkpoint_dir)
        seq_len = min(max_seq_len or DEFAULT_CPU_MAX_SEQ_LEN, facts["max_position_embeddings"])
        settings = RepoSettings(
            max_batch_size=max_batch_size or DEFAULT_CPU_MAX_BATCH,
            max_input_len=min(max_input_len or seq_len // 2, seq_len - 1),
            max_seq_len=seq_len,
            tokenizer_dir=TOKENIZER_SUBDIR,
            checkpoint_dir=str(checkpoint_dir),
            instances=instances,
            kv_cache_reuse=False,
        )
    with atomic_output_dir(output, overwrite) as tmp:
        for name, config in model_configs.all_configs(settings).items():
            version = tmp / name / "1"
            version.mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(model_configs.render(config))
            files = MODEL_FILES.get(name, CPU_ENGINE_FILES if name == ENGINE and checkpoint_dir else ())
            for source in files:
                shutil.copy2(source, version / source.name)
        _copy_tokenizer(tokenizer_dir, tmp / TOKENIZER_SUBDIR)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        write_manifest(
            tmp,
            "repo",
            target="engine" if engine_dir else "checkpoint",
            backend="tensorrtllm" if engine_dir else "python-cpu-reference",
            engine_dir=str(engine_dir) if engine_dir else None,
            checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
            tokenizer_source=str(tokenizer_dir.resolve()),
            world_size=world_size,
            settings=asdict(settings),
            files=describe_files(files, tmp),
        )
    return output


def check_llmapi_model_dir(directory: Path) -> None:
    missing = [name for name in LLMAPI_STOCK_FILES if not (directory / name).is_file()]
    if missing:
        raise click.ClickException(
            f"{directory} lacks {', '.join(missing)}: pass the `triton_backend/all_models/llmapi/tensorrt_llm/1` "
            "directory of a TensorRT-LLM clone at the tag of the installed tensorrt_llm."
        )


def write_llmapi_repository(
    output: Path,
    tokenizer_dir: Path,
    deployment: Deployment | None = None,
    hf_checkpoint: Path | None = None,
    llmapi_model: Path | None = None,
    max_batch_size: int | None = None,
    instances: int = 1,
    max_seq_len: int | None = None,
    overwrite: bool = False,
) -> Path:
    """The pytorch-target repository: llmapi `tensorrt_llm` (stock, or the CPU stand-in) + our front."""
    cpu = deployment is None
    if cpu:
        checkpoint = hf_checkpoint.resolve()
        arch_max = read_hf_config(checkpoint).max_position_embeddings
        seq_len = min(max_seq_len or DEFAULT_CPU_MAX_SEQ_LEN, arch_max)
        options = {"max_batch_size": max_batch_size or DEFAULT_CPU_MAX_BATCH, "max_seq_len": seq_len}
    else:
        checkpoint, options = deployment.checkpoint, dict(deployment.options)
        if max_batch_size is not None and max_batch_size > int(options.get("max_batch_size", max_batch_size)):
            raise click.ClickException(
                f"--max-batch-size {max_batch_size} exceeds the deployment's max_batch_size "
                f"{options['max_batch_size']}."
            )
    if llmapi_model is not None:
        check_llmapi_model_dir(llmapi_model)
    has_tokenizer = all((checkpoint / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer_for_llm = None if has_tokenizer else str(tokenizer_dir.resolve())
    front_batch = max_batch_size or int(options.get("max_batch_size", DEFAULT_CPU_MAX_BATCH))
    configs = {
        ENGINE: llmapi_configs.llmapi_config(cpu_stand_in=cpu),
        BLS: llmapi_configs.front_config(front_batch, instances, llmapi_configs.LLMAPI_FRONT_TOKENIZER),
    }
    engine_files: tuple[Path, ...] = LLMAPI_CPU_FILES if cpu else ()
    if llmapi_model is not None:
        engine_files = tuple(llmapi_model / name for name in LLMAPI_STOCK_FILES)
    with atomic_output_dir(output, overwrite) as tmp:
        for name, config in configs.items():
            version = tmp / name / "1"
            version.mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(model_configs.render(config))
            for source in LLMAPI_FRONT_FILES if name == BLS else engine_files:
                shutil.copy2(source, version / source.name)
        yaml_data = llmapi_configs.model_yaml(options, str(checkpoint), tokenizer_for_llm)
        (tmp / ENGINE / "1" / "model.yaml").write_text(yaml.safe_dump(yaml_data, sort_keys=False))
        _copy_tokenizer(tokenizer_dir, tmp / llmapi_configs.LLMAPI_FRONT_TOKENIZER)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        stock = "cpu-stand-in" if cpu else ("copied" if llmapi_model else "missing")
        write_manifest(
            tmp,
            "repo",
            target="pytorch",
            backend="python-cpu-llmapi-stand-in" if cpu else "llmapi",
            llmapi_model=stock,
            llmapi_model_source=str(llmapi_model.resolve()) if llmapi_model else None,
            deployment_dir=str(deployment.directory) if deployment else None,
            checkpoint_dir=str(checkpoint),
            tokenizer_source=str(tokenizer_dir.resolve()),
            world_size=1,  # one tritonserver; the LLM API spawns its TP/PP workers itself
            tensor_parallel_size=int(options.get("tensor_parallel_size", 1)),
            pipeline_parallel_size=int(options.get("pipeline_parallel_size", 1)),
            models=list(configs),
            files=describe_files(files, tmp),
        )
    if stock == "missing":
        click.echo(
            f"Note: copy model.py and helpers.py from triton_backend/all_models/llmapi/tensorrt_llm/1/ of the "
            f"TensorRT-LLM tag matching the serving host's tensorrt_llm into {output / ENGINE / '1'} (or "
            "write the repository again with --llmapi-model DIR) before serving.",
            err=True,
        )
    return output


def repository_manifest(repo: Path) -> dict[str, Any]:
    manifest = repo / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def repository_world_size(repo: Path) -> int:
    """World size recorded by `swallow-trt repo` (1 for the CPU engine)."""
    manifest = repo / "manifest.json"
    if manifest.is_file():
        return int(json.loads(manifest.read_text()).get("world_size", 1))
    config = model_configs.parse((repo / ENGINE / "config.pbtxt").read_text())
    if config.backend == "tensorrtllm":
        return engine_facts(Path(config.parameters["gpt_model_path"].string_value))["world_size"]
    return 1


@click.command()
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Model repository to write.")
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Hugging Face tokenizer directory (copied into the repository).",
)
@click.option(
    "--engine",
    "engine_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="TensorRT-LLM engine directory (C++ tensorrtllm backend), or a `build --target pytorch` deployment "
    "(TensorRT-LLM's llmapi model); GPU.",
)
@click.option(
    "--checkpoint",
    "checkpoint_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="TensorRT-LLM checkpoint, or Hugging Face directory (pytorch-target layout): served by the CPU "
    "reference engine (no GPU needed).",
)
@click.option(
    "--llmapi-model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="SWALLOW_TRT_LLMAPI_MODEL",
    help="pytorch deployments: TensorRT-LLM's triton_backend/all_models/llmapi/tensorrt_llm/1 (model.py, "
    "helpers.py) at the tag of the serving host's tensorrt_llm, copied into the repository.",
)
@click.option("--max-batch-size", type=click.IntRange(min=1), help="Triton max batch size [engine's / 32].")
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="preprocessing and BLS instances.",
)
@click.option(
    "--kv-cache-free-gpu-mem-fraction",
    type=click.FloatRange(0.05, 0.99),
    default=0.9,
    show_default=True,
    help="Share of free GPU memory (after the engine loads) for the KV cache.",
)
@click.option(
    "--kv-cache-reuse/--no-kv-cache-reuse",
    default=None,
    help="Prefix (system prompt) KV reuse [on when the engine has paged context FMHA].",
)
@click.option(
    "--max-input-len", type=click.IntRange(min=1), help="CPU engine: longest prompt [max-seq-len/2]."
)
@click.option("--max-seq-len", type=click.IntRange(min=2), help="CPU engine: prompt + output limit [8192].")
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
def command(
    output: Path,
    tokenizer_dir: Path,
    engine_dir: Path | None,
    checkpoint_dir: Path | None,
    max_batch_size: int | None,
    instances: int,
    kv_cache_free_gpu_mem_fraction: float,
    kv_cache_reuse: bool | None,
    max_input_len: int | None,
    max_seq_len: int | None,
    llmapi_model: Path | None,
    overwrite: bool,
) -> None:
    """Write a Triton model repository (ensemble, preprocessing, tensorrt_llm, postprocessing, BLS;
    for the pytorch target: the llmapi tensorrt_llm and our tensorrt_llm_bls front)."""
    write_repository(
        output,
        tokenizer_dir,
        engine_dir=engine_dir,
        checkpoint_dir=checkpoint_dir,
        max_batch_size=max_batch_size,
        instances=instances,
        kv_cache_free_gpu_mem_fraction=kv_cache_free_gpu_mem_fraction,
        kv_cache_reuse=kv_cache_reuse,
        max_input_len=max_input_len,
        max_seq_len=max_seq_len,
        overwrite=overwrite,
        llmapi_model=llmapi_model,
    )
    manifest = repository_manifest(output)
    if manifest.get("target") == "pytorch":
        click.echo(
            f"Wrote {output} (pytorch target: {manifest['backend']}; send requests to tensorrt_llm_bls). "
            f"Serve it with: swallow-trt serve --repo {output}"
        )
        return
    target = "C++ tensorrtllm backend" if engine_dir else "CPU reference engine"
    click.echo(f"Wrote {output} ({target}). Serve it with: swallow-trt serve --repo {output}")
