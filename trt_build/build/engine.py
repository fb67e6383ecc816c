"""The engine target: run trtllm-build on a TRT-LLM checkpoint with flags chosen for the GPU.

The command comes from the rule table in trtllm_build_rules.py (every flag with its reason, shown by
--dry-run). A real build checks the host first (trtllm-build on PATH, nvidia-smi, the GPU's compute
capability against --gpu), writes into a temporary directory renamed on success, checks that
config.json and every rank{N}.engine exist, and records a manifest.json.

A host without trtllm-build or an NVIDIA GPU is refused with exit status NO_GPU_TOOLCHAIN (3): nothing is
built, and the exact command to run on a GPU host is part of the message.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from trt_build.build.trtllm_build_rules import BuildRequest, Composition, compose
from trt_build.common.console import say
from trt_build.common.errors import NO_GPU_TOOLCHAIN, SwallowTrtError
from trt_build.common.gpus import GpuProfile, profile_for_compute_capability
from trt_build.common.manifest import sha256_file, write_manifest
from trt_build.common.outdir import atomic_output_dir, check_output
from trt_build.formats.trtllm_config import TrtllmCheckpoint, read_trtllm_checkpoint
from trt_build.quant.schemes import scheme_for_quant_algo

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
    """(trtllm-build path, GPUs); a host without them is refused with NO_GPU_TOOLCHAIN and the command."""
    trtllm_build, gpus = shutil.which("trtllm-build"), detect_gpus()
    missing = [
        what for what, ok in (("trtllm-build", trtllm_build), ("NVIDIA GPU (nvidia-smi)", gpus)) if not ok
    ]
    if missing:
        raise SwallowTrtError(
            f"Engine NOT built: this host has no {' and no '.join(missing)}.",
            f"{INSTALL_HINT}\nThen run on the GPU host ({profile.description}):\n  {command_text}",
            exit_code=NO_GPU_TOOLCHAIN,
        )
    assert trtllm_build is not None and gpus is not None
    wanted = tuple(profile.compute_capability)
    wrong = [g for g in gpus if tuple(g["compute_capability"]) != wanted]
    if wrong:
        found = profile_for_compute_capability(*wrong[0]["compute_capability"], wrong[0]["memory_bytes"])
        hint = f"--gpu {found.name}" if found else "the profile of this GPU"
        raise SwallowTrtError(
            f"--gpu {profile.name} is compute capability {wanted[0]}.{wanted[1]}, but this host has "
            f"{wrong[0]['name']} ({'.'.join(map(str, wrong[0]['compute_capability']))}).",
            "Engines only run on the GPU architecture they were built on: build on a "
            f"{profile.name} host, or pass {hint}.",
        )
    return trtllm_build, gpus


def stream(argv: list[str]) -> int:
    """Run `argv`, passing its output on line by line as it comes; return its exit status."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            say(line, end="")
        return process.wait()


def check_engine_dir(engine: Path, world_size: int) -> None:
    missing = [
        name
        for name in ["config.json", *(f"rank{r}.engine" for r in range(world_size))]
        if not (engine / name).is_file()
    ]
    if missing:
        raise SwallowTrtError(
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


def build_engine(request: BuildRequest, final: Path, overwrite: bool, dry_run: bool) -> str:
    """trtllm-build into a temporary directory, checked, renamed, with a manifest; returns what to tell
    the user (with `dry_run`, the command and its reasons, and nothing is run)."""
    composition = compose(request)
    if composition.refusals:
        raise SwallowTrtError(" ".join(composition.refusals))
    if dry_run:
        return explain(composition)
    check_output(final, overwrite, [Path(request.checkpoint_dir)])
    trtllm_build, gpus = check_host(request.gpu, shlex.join(composition.argv))
    for warning in composition.warnings:
        say(f"Warning: {warning}", err=True)
    version = tensorrt_llm_version(trtllm_build)
    with atomic_output_dir(final, overwrite, [Path(request.checkpoint_dir)]) as tmp:
        run_request = replace(
            request,
            output_dir=str(tmp),
            workers=min(request.build_workers, len(gpus)),
            timing_cache=request.timing_cache_path,
        )
        run = compose(run_request, program=trtllm_build)
        say(f"$ {shlex.join(run.argv)}", err=True)
        started = time.time()
        returncode = stream(run.argv)
        if returncode != 0:
            raise SwallowTrtError(
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
    return f"Engine written to {final} (TensorRT-LLM {version}); serve it with the same version."
