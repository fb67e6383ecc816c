"""`swallow-trt build`: run trtllm-build on a TRT-LLM checkpoint with flags chosen for the GPU.

The command comes from the rule table in trtllm_build_rules.py (every flag with its reason, shown by
--dry-run). A real build checks the host first (trtllm-build on PATH, nvidia-smi, the GPU's compute
capability against --gpu), writes into a temporary directory renamed on success, checks that
config.json and every rank{N}.engine exist, and records a manifest.json.

Exit status: 0 built (or --dry-run printed); 1 refused or failed; 3 (NO_GPU_TOOLCHAIN) this host has no
trtllm-build or no NVIDIA GPU: nothing was built and the exact command to run on a GPU host is printed.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import click

from trt_build.build.trtllm_build_rules import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    BuildRequest,
    Composition,
    compose,
)
from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.gpus import PROFILES, GpuProfile, get_profile, profile_for_compute_capability
from trt_build.common.manifest import sha256_file, write_manifest
from trt_build.common.outdir import atomic_output_dir, refuse_existing
from trt_build.common.targets import TARGET_CHOICES, resolve_target
from trt_build.formats.trtllm_config import TrtllmCheckpoint, read_trtllm_checkpoint
from trt_build.quant.schemes import KV_CACHE_DTYPES, scheme_for_quant_algo

NO_GPU_TOOLCHAIN = 3
INSTALL_HINT = (
    "Install TensorRT-LLM on the GPU host from NVIDIA's index "
    "(pip install --extra-index-url https://pypi.nvidia.com tensorrt-llm==<version>; the last release line "
    "with trtllm-build is 1.2.x / 1.3.0rc20), or run inside the NGC container "
    "nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3 (26.07 carries TensorRT-LLM 1.2.1). Build and "
    "serve with the same TensorRT-LLM version."
)


def read_checkpoint(checkpoint: Path) -> TrtllmCheckpoint:
    """A TRT-LLM checkpoint with every rank file, in a quantization swallow-trt builds."""
    settings = read_trtllm_checkpoint(checkpoint)
    scheme_for_quant_algo(settings.quant_algo, str(checkpoint / "config.json"))
    return settings


def detect_gpus() -> list[dict[str, Any]] | None:
    """GPUs from nvidia-smi (name, compute capability, memory), or None when there is no NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits"]
    result = subprocess.run(query, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    gpus = []
    for line in result.stdout.strip().splitlines():
        name, cap, mib = (part.strip() for part in line.split(","))
        major, minor = (int(x) for x in cap.split("."))
        gpus.append(
            {"name": name, "compute_capability": [major, minor], "memory_bytes": int(float(mib)) << 20}
        )
    return gpus or None


def tensorrt_llm_version(trtllm_build: str) -> str | None:
    """The tensorrt_llm version of the interpreter that runs trtllm-build (read from its shebang)."""
    try:
        return importlib.metadata.version("tensorrt_llm")
    except importlib.metadata.PackageNotFoundError:
        pass
    first = Path(trtllm_build).read_bytes()[:256].split(b"\n", 1)[0].decode(errors="replace")
    if not first.startswith("#!"):
        return None
    code = "import importlib.metadata as m; print(m.version('tensorrt_llm'))"
    result = subprocess.run([*shlex.split(first[2:]), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def check_host(profile: GpuProfile, command_text: str) -> tuple[str, list[dict[str, Any]]]:
    """(trtllm-build path, GPUs) or exit NO_GPU_TOOLCHAIN with what to install and the command to run."""
    trtllm_build, gpus = shutil.which("trtllm-build"), detect_gpus()
    missing = [
        what for what, ok in (("trtllm-build", trtllm_build), ("NVIDIA GPU (nvidia-smi)", gpus)) if not ok
    ]
    if missing:
        click.echo(
            f"Engine NOT built: this host has no {' and no '.join(missing)}.\n{INSTALL_HINT}\n"
            f"Then run on the GPU host ({profile.description}):\n  {command_text}",
            err=True,
        )
        raise SystemExit(NO_GPU_TOOLCHAIN)
    wanted = tuple(profile.compute_capability)
    wrong = [g for g in gpus if tuple(g["compute_capability"]) != wanted]
    if wrong:
        found = profile_for_compute_capability(*wrong[0]["compute_capability"], wrong[0]["memory_bytes"])
        hint = f"--gpu {found.name}" if found else "the profile of this GPU"
        raise click.ClickException(
            f"--gpu {profile.name} is compute capability {wanted[0]}.{wanted[1]}, but this host has "
            f"{wrong[0]['name']} ({'.'.join(map(str, wrong[0]['compute_capability']))}). Engines only run on the "
            f"GPU architecture they were built on: build on a {profile.name} host, or pass {hint}."
        )
    return trtllm_build, gpus


def stream(argv: list[str]) -> int:
    """Run `argv`, echoing its output line by line as it comes; return its exit status."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            click.echo(line, nl=False)
        return process.wait()


def check_engine_dir(engine: Path, world_size: int) -> None:
    missing = [
        name
        for name in ["config.json", *(f"rank{r}.engine" for r in range(world_size))]
        if not (engine / name).is_file()
    ]
    if missing:
        raise click.ClickException(
            f"trtllm-build exited 0 but the engine directory lacks {', '.join(missing)}; nothing was kept."
        )


def explain(composition: Composition) -> str:
    """The command with a comment line per flag saying why it is there (what --dry-run prints)."""
    lines = ["# trtllm-build command composed by swallow-trt; why each flag is there:"]
    for flags, reason in composition.reasons:
        lines.append(f"#   {shlex.join(flags)}: {reason}")
    lines += [f"# WARNING: {warning}" for warning in composition.warnings]
    lines.append(shlex.join(composition.argv))
    return "\n".join(lines)


def build_engine_target(request: BuildRequest, final: Path, overwrite: bool, dry_run: bool) -> None:
    """The `engine` target: trtllm-build into a temporary directory, checked, renamed, with a manifest."""
    composition = compose(request)
    if composition.refusals:
        raise click.ClickException(" ".join(composition.refusals))
    if dry_run:
        click.echo(explain(composition))
        return
    refuse_existing(final, overwrite)
    trtllm_build, gpus = check_host(request.gpu, shlex.join(composition.argv))
    for warning in composition.warnings:
        click.echo(f"Warning: {warning}", err=True)
    version = tensorrt_llm_version(trtllm_build)
    workers = min(request.workers or request.ranks_on_node, len(gpus))
    with atomic_output_dir(final, overwrite) as tmp:
        timing_cache = request.timing_cache or f"{str(final).rstrip('/')}.timing.cache"
        run_request = {
            **request.__dict__,
            "output_dir": str(tmp),
            "workers": workers,
            "timing_cache": timing_cache,
        }
        run = compose(BuildRequest(**run_request))
        run.argv[0] = trtllm_build
        click.echo(f"$ {shlex.join(run.argv)}", err=True)
        started = time.time()
        returncode = stream(run.argv)
        if returncode != 0:
            raise click.ClickException(
                f"trtllm-build failed with exit status {returncode} (its output is above); nothing was kept."
            )
        check_engine_dir(tmp, request.world_size)
        write_manifest(
            tmp,
            "build",
            target="engine",
            trtllm_build_command=composition.argv,
            trtllm_build_command_run=run.argv,
            flag_reasons=[{"flags": flags, "reason": reason} for flags, reason in composition.reasons],
            tensorrt_llm_version=version,
            gpu_profile=request.gpu.as_dict(),
            gpus_detected=gpus,
            checkpoint={
                "path": str(Path(request.checkpoint_dir).resolve()),
                "config_sha256": sha256_file(Path(request.checkpoint_dir) / "config.json"),
            },
            build_seconds=round(time.time() - started, 1),
        )
    click.echo(f"Engine written to {final} (TensorRT-LLM {version}); serve it with the same version.")


BUILD_TARGETS = {"engine": build_engine_target}


@click.command(cls=SwallowTrtCommand)
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Engine (or pytorch deployment) directory to write.",
)
@click.option("--gpu", "gpu_name", required=True, type=click.Choice(sorted(PROFILES), case_sensitive=False))
@click.option("--max-batch-size", type=click.IntRange(1), default=DEFAULT_MAX_BATCH_SIZE, show_default=True)
@click.option("--max-seq-len", type=click.IntRange(1), default=DEFAULT_MAX_SEQ_LEN, show_default=True)
@click.option("--max-input-len", type=click.IntRange(1), default=None, help="[default: max-seq-len]")
@click.option("--max-num-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NUM_TOKENS, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=None, help="[default: ranks on this node]")
@click.option(
    "--target",
    type=click.Choice(TARGET_CHOICES),
    default="engine",
    show_default=True,
    help="engine: trtllm-build; pytorch: LLM-API options for an HF/ModelOpt checkpoint (no compilation); "
    "auto: by the installed TensorRT-LLM version.",
)
@click.option("--tp", type=click.IntRange(1, 64), default=None, help="pytorch: tensor parallelism [1].")
@click.option("--pp", type=click.IntRange(1, 64), default=None, help="pytorch: pipeline parallelism [1].")
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(list(KV_CACHE_DTYPES)),
    default="auto",
    show_default=True,
    help="pytorch: auto = the checkpoint's KV format, fp8 = force an FP8 KV cache.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing engine / deployment directory.")
@click.option("--dry-run", is_flag=True, help="Print the command (or options) with the reason for each flag.")
def command(
    checkpoint: Path,
    output: Path,
    gpu_name: str,
    max_batch_size: int,
    max_seq_len: int,
    max_input_len: int | None,
    max_num_tokens: int,
    workers: int | None,
    target: str,
    tp: int | None,
    pp: int | None,
    kv_cache_dtype: str,
    overwrite: bool,
    dry_run: bool,
) -> None:
    """Build a TensorRT engine (trtllm-build), or a PyTorch-backend deployment (--target pytorch).

    Exit status 3: no trtllm-build / NVIDIA GPU here; the command to run on the GPU host is printed.
    """
    target = resolve_target(target)
    if target == "pytorch":
        from trt_build.build.pytorch import build_pytorch_target, options_request

        if max_input_len is not None or workers is not None:
            raise click.ClickException("--max-input-len and --workers are engine-target options; drop them.")
        request, kind = options_request(
            checkpoint,
            get_profile(gpu_name),
            tp or 1,
            pp or 1,
            kv_cache_dtype,
            max_batch_size,
            max_seq_len,
            max_num_tokens,
        )
        build_pytorch_target(checkpoint, output, request, kind, overwrite, dry_run)
        return
    settings = read_checkpoint(checkpoint)
    for option, given, converted in (("--tp", tp, settings.tp), ("--pp", pp, settings.pp)):
        if given is not None and given != converted:
            raise click.ClickException(
                f"{option} {given}: this TRT-LLM checkpoint was converted for {option} {converted} (engines take "
                "their mapping from the checkpoint); convert again, or leave the option out."
            )
    if kv_cache_dtype != "auto":
        raise click.ClickException(
            "--kv-cache-dtype is fixed at conversion for engines: `swallow-trt convert --kv-cache-dtype fp8`."
        )
    request = BuildRequest(
        checkpoint_dir=str(checkpoint),
        output_dir=str(output),
        gpu=get_profile(gpu_name),
        quant_algo=settings.quant_algo,
        kv_cache_quant_algo=settings.kv_cache_quant_algo,
        tp=settings.tp,
        pp=settings.pp,
        max_seq_len=max_seq_len,
        max_batch_size=max_batch_size,
        max_input_len=max_input_len,
        max_num_tokens=max_num_tokens,
        workers=workers,
        gpus_per_node=settings.gpus_per_node,
    )
    BUILD_TARGETS[target](request, output, overwrite, dry_run)
