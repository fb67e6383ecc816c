"""Engine-level mode: run `trtllm-bench throughput` on an engine, with our Japanese prompts.

`--engine-dir` takes a TensorRT engine directory (`--backend tensorrt`, TensorRT-LLM <= 1.3.0rc20) or a
`build --target pytorch` deployment (`--backend pytorch` on its checkpoint, `--extra_llm_api_options` its
options YAML, its TP/PP): the same numbers for both targets.

trtllm-bench drives the engine in process (no HTTP/gRPC), so comparing it with a `swallow-trt bench`
run on the same engine shows the serving overhead (docs/metrics.md §1.5). It has no
request-rate mode, so only concurrency levels are accepted. The dataset is written as trtllm-bench's
JSON lines of token ids (`task_id`, `input_ids`, `output_tokens`), so the input lengths are exact, and
EOS is disabled (`--eos_id -1`) so the output lengths are too. After each level, trtllm-bench's own JSON
is converted into our level result (benchmarks/engine_level/trtllm_results.py), so `swallow-trt report` reads it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.engine_level.trtllm_results import convert_level
from benchmarks.load.datasets import load_tokenizer, synthetic
from benchmarks.load.levels import LoadLevel
from benchmarks.metrics import results
from benchmarks.metrics.summary import Summary, headline
from benchmarks.options import DEFAULT_REQUESTS, BenchOptions
from trt_build.build.pytorch import is_pytorch_deployment, read_deployment
from trt_build.common.console import say
from trt_build.common.errors import SwallowTrtError, UsageError
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir

TRTLLM_BENCH = "trtllm-bench"


def write_dataset(
    path: Path, tokenizer, count: int, isl: int, isl_stddev: float, osl: int, osl_stddev: float, seed: int
) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for task_id, request in enumerate(
            synthetic(tokenizer, count, isl, isl_stddev, osl, osl_stddev, seed)
        ):
            ids = tokenizer.encode(request.prompt, add_special_tokens=False)
            line = {"task_id": task_id, "input_ids": ids, "output_tokens": request.output_tokens}
            handle.write(json.dumps(line) + "\n")


Options = list[tuple[str, str | None]]


@dataclass(frozen=True)
class BenchTarget:
    """What trtllm-bench runs: a TensorRT engine, or a `build --target pytorch` deployment (the PyTorch
    backend on its HF / ModelOpt checkpoint, with the deployment's LLM-API options YAML)."""

    kind: str  # "engine" | "pytorch"
    options: Options  # the throughput options that select and configure the backend
    model_path: Path | None  # the checkpoint trtllm-bench reads (--model_path)


def bench_target(directory: Path, hf_model_dir: Path | None, dry_run: bool) -> BenchTarget:
    if is_pytorch_deployment(directory):
        deployment = read_deployment(directory)
        options: Options = [
            ("--backend", "pytorch"),
            ("--extra_llm_api_options", str(deployment.options_path)),
            ("--tp", str(deployment.tp)),
            ("--pp", str(deployment.pp)),
        ]
        return BenchTarget("pytorch", options, deployment.checkpoint)
    if not (directory / "config.json").exists() and not dry_run:
        raise SwallowTrtError(
            f"{directory} is neither an engine directory (config.json) nor a pytorch deployment "
            "(build --target pytorch)."
        )
    return BenchTarget("engine", [("--backend", "tensorrt"), ("--engine_dir", str(directory))], hf_model_dir)


# Kept even where the installed --help does not list them: without these the run means something else.
REQUIRED_FLAGS = {"--engine_dir", "--dataset", "--extra_llm_api_options"}


def compose(
    model: str,
    target: BenchTarget,
    dataset: Path,
    concurrency: int,
    num_requests: int,
    warmup: int,
    level_dir: Path,
    supported: set[str] | None = None,
) -> list[str]:
    """The trtllm-bench command for one concurrency level. Throughput options the installed version does
    not list in its --help (`supported`) are left out, so one command works across releases."""
    top = [TRTLLM_BENCH, "--model", model]
    if target.model_path is not None:
        top += ["--model_path", str(target.model_path)]
    options = [
        *target.options,
        ("--dataset", str(dataset)),
        ("--num_requests", str(num_requests)),
        ("--concurrency", str(concurrency)),
        ("--warmup", str(warmup)),
        ("--eos_id", "-1"),
        ("--streaming", None),
        ("--report_json", str(level_dir / "trtllm_report.json")),
        ("--request_json", str(level_dir / "trtllm_requests.json")),
    ]
    required = REQUIRED_FLAGS | ({"--backend"} if target.kind == "pytorch" else set())
    args = ["throughput"]
    for flag, value in options:
        if supported is not None and flag not in supported and flag not in required:
            continue
        args += [flag] if value is None else [flag, value]
    return top + args


def supported_flags() -> set[str] | None:
    """Flags listed by `trtllm-bench throughput --help`, or None when it is not installed."""
    if shutil.which(TRTLLM_BENCH) is None:
        return None
    result = subprocess.run(
        [TRTLLM_BENCH, "throughput", "--help"], capture_output=True, text=True, timeout=300
    )
    return {word.strip(",") for word in result.stdout.split() if word.startswith("--")}


def in_temp_dir(part: str, output: Path, tmp: Path) -> str:
    """A command argument that is a path inside the final output directory, moved into the temporary one;
    any other argument as it is (an engine at `runs/fp8-engine` beside `--output runs/fp8` stays put)."""
    final = str(output)
    if part == final or part.startswith(final + "/"):
        return str(tmp) + part[len(final) :]
    return part


def run_level(tmp: Path, output: Path, level: LoadLevel, command: list[str]) -> None:
    """Run trtllm-bench for one level; its log and JSON files go into the level directory."""
    (tmp / level.name).mkdir()
    # trtllm-bench writes its reports under the final path: point it at the temp dir instead.
    command = [in_temp_dir(part, output, tmp) for part in command]
    with open(tmp / level.name / "trtllm.log", "w") as log:
        say(f"{level.name}: {shlex.join(command)}")
        try:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        except KeyboardInterrupt:  # run() has killed trtllm-bench; the levels before this one are kept
            raise SwallowTrtError(f"trtllm-bench stopped by Ctrl-C at {level.name}.") from None
    if result.returncode != 0:
        tail = "\n".join((tmp / level.name / "trtllm.log").read_text(errors="replace").splitlines()[-30:])
        raise SwallowTrtError(f"trtllm-bench failed at {level.name} (exit {result.returncode}):\n{tail}")


def run_levels(
    tmp: Path,
    output: Path,
    commands: list[tuple[LoadLevel, list[str]]],
    label: str,
    config: dict[str, Any],
    requested_output_tokens: int | None,
    slo_ms: dict[str, float] | None,
) -> tuple[list[tuple[str, Summary]], list[str], SwallowTrtError | None]:
    """Run and convert each level: (converted levels, levels kept raw, the failure that stopped the run).
    A failure or Ctrl-C after the first level keeps what was measured: a long GPU run is not thrown away."""
    written: list[tuple[str, Summary]] = []
    not_converted: list[str] = []
    for level, command in commands:
        try:
            run_level(tmp, output, level, command)
        except SwallowTrtError as error:
            if not written and not not_converted:
                raise  # nothing measured yet: leave no output
            if written:
                results.write_index(tmp, label, written, partial=True)
            return written, not_converted, error
        level_config = {**config, "load_level": level.name, "load": level.describe()}
        try:
            summary = convert_level(tmp / level.name, label, level_config, requested_output_tokens, slo_ms)
        except SwallowTrtError as error:  # keep the raw files
            say(f"warning: {level.name} not converted: {error.message}", err=True)
            not_converted.append(level.name)
            continue
        say(headline(summary))
        written.append((level.name, summary))
    if written:
        results.write_index(tmp, label, written, partial=False)
    return written, not_converted, None


def engine_config(
    options: BenchOptions, target: BenchTarget, model: str, num_requests: int, warmup: int
) -> dict[str, Any]:
    """summary.json's `config` for every level: what trtllm-bench ran."""
    return {
        "protocol": "trtllm-bench (in process)",
        "model": model,
        "engine_dir": str(options.engine_dir),
        "target": target.kind,
        "dataset": "synthetic",
        "isl": options.isl,
        "isl_stddev": options.isl_stddev,
        "osl": options.osl,
        "osl_stddev": options.osl_stddev,
        "lengths_in_characters": options.lengths_in_characters,
        "ignore_eos": True,  # --eos_id -1
        "num_requests": num_requests,
        "warmup": warmup,
        "seed": options.seed,
    }


def commands_script(commands: list[tuple[LoadLevel, list[str]]], output: Path) -> str:
    """commands.sh's body: each level's command, after creating its directory (trtllm-bench writes its
    JSON only at the end of a level and does not create the directory)."""
    return "".join(
        f"mkdir -p {shlex.quote(str(output / level.name))} && {shlex.join(command)}\n"
        for level, command in commands
    )


def resolve_model(options: BenchOptions, target: BenchTarget) -> str:
    """The model id trtllm-bench is given: --model, else the deployment checkpoint's name."""
    if options.model:
        return options.model
    if target.model_path is not None:
        return target.model_path.name  # a name only: trtllm-bench reads --model_path
    raise SwallowTrtError(
        "--model is required with --engine-dir: the Hugging Face model id trtllm-bench reads "
        "(e.g. tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3)."
    )


def run_trtllm_bench(options: BenchOptions, levels: list[LoadLevel], slo_ms: dict[str, float]) -> str:
    """Write the token dataset and the commands, run trtllm-bench per level (unless a dry run) and convert
    each level's output into our results; returns the closing line."""
    if any(level.kind != "concurrency" for level in levels):
        raise UsageError("trtllm-bench has no request-rate mode: use --concurrency with --engine-dir.")
    engine_dir, output = options.engine_dir, options.output
    target = bench_target(engine_dir, options.hf_model_dir, options.dry_run)
    model = resolve_model(options, target)
    supported = supported_flags()
    if supported is None and not options.dry_run:
        raise SwallowTrtError(
            "trtllm-bench is not installed here.",
            "It comes with TensorRT-LLM on a GPU host (pip install --extra-index-url https://pypi.nvidia.com "
            "tensorrt-llm, or the NGC tritonserver -trtllm- container). Add --dry-run to see the commands.",
        )
    from trt_build.source.tokenizer import ensure_tokenizer

    num_requests = options.num_requests or DEFAULT_REQUESTS
    warmup = 2 if options.warmup is None else options.warmup  # trtllm-bench's own default
    tokenizer = load_tokenizer(options.tokenizer_dir or target.model_path or ensure_tokenizer())
    started = time.time()
    with atomic_output_dir(output, options.overwrite) as tmp:
        write_dataset(
            tmp / "dataset.jsonl", tokenizer, num_requests, options.isl, options.isl_stddev, options.osl,
            options.osl_stddev, options.seed,
        )  # fmt: skip
        commands = [
            (level, compose(model, target, output / "dataset.jsonl", int(level.value), num_requests, warmup,
                            output / level.name, supported))  # the paths the files have once renamed
            for level in levels
        ]  # fmt: skip
        script = commands_script(commands, output)
        (tmp / "commands.sh").write_text("#!/bin/sh\nset -e\n" + script)
        written, not_converted, failed = [], [], None
        if options.dry_run:
            say(script, end="")
        else:
            requested = options.osl if options.osl_stddev == 0 else None
            config = engine_config(options, target, model, num_requests, warmup)
            written, not_converted, failed = run_levels(
                tmp, output, commands, options.run_label, config, requested, slo_ms
            )
        write_manifest(
            tmp, "bench-trtllm", label=options.run_label, engine_dir=str(engine_dir), dry_run=options.dry_run,
            levels=[level.name for level in levels], converted=[name for name, _ in written],
            not_converted=not_converted, partial=failed is not None, source="trtllm-bench",
            seconds=time.time() - started,
        )  # fmt: skip
    if failed is not None:
        raise SwallowTrtError(f"{failed.message}\nThe levels measured before it are in {output}.")
    return f"trtllm-bench {'commands' if options.dry_run else 'results'} in {output}"
