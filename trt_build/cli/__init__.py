"""The `swallow-trt` command line: the command layer over the library packages.

Subcommands are a table: name -> (module:attribute, one-line help). A command's module is imported
only when that command runs, so `swallow-trt --help` stays fast (no torch import). Commands are built
with `trt_build.cli.base.command`, which turns the library's `SwallowTrtError` into a CLI message.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from trt_build import __version__
from trt_build.cli.base import CliError
from trt_build.common.errors import SwallowTrtError

# name: (where the click command lives, one-line description shown by --help), in pipeline order
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("trt_build.cli.source:models", "List the known Swallow checkpoints and their shapes."),
    "fetch": ("trt_build.cli.source:fetch_command", "Download a model's safetensors, configs and tokenizer."),
    "plan": (
        "trt_build.cli.plan:plan",
        "Plan GPU memory: weights, KV cache, sequences that fit, TP, flags.",
    ),
    "calibrate": (
        "trt_build.cli.convert:calibrate_command",
        "Calibrate FP8 / INT4-AWQ scales layer by layer.",
    ),
    "convert": (
        "trt_build.cli.convert:convert_command",
        "Convert HF weights for TensorRT-LLM (engine or pytorch target).",
    ),
    "verify": (
        "trt_build.cli.verify:verify_command",
        "Compare a converted checkpoint's logits with its HF source.",
    ),
    "build": ("trt_build.cli.build:build", "Build an engine (trtllm-build) or a PyTorch deployment."),
    "deploy": (
        "trt_build.cli.deploy:deploy",
        "Write a deployment for NVIDIA Dynamo (local, Kubernetes, Slurm).",
    ),
    "repo": ("trt_build.cli.serve:repo", "Write a Triton model repository (engine, deployment, CPU)."),
    "serve": ("trt_build.cli.serve:serve", "Serve a model repository with tritonserver until Ctrl-C."),
    "chat": ("trt_build.cli.serve:chat", "Stream an answer from a running server to the terminal."),
    "bench": ("trt_build.cli.bench:bench", "Benchmark a server: TTFT, ITL, TPOT, throughput, goodput."),
    "conform": (
        "trt_build.cli.conform:conform",
        "Check an endpoint serves Japanese right on every path (Triton or OpenAI).",
    ),
    "report": (
        "trt_build.cli.bench:report",
        "Compare benchmark results: REPORT.md with tables and plots.",
    ),
    "tokenizer": (
        "trt_build.cli.source:tokenizer_command",
        "Build the Llama 3.1 tokenizer offline (cached).",
    ),
    "tiny-model": (
        "trt_build.cli.source:tiny_model_command",
        "Write a Swallow-architecture model with random weights.",
    ),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        command.short_help = COMMANDS[name][1]
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SwallowTrtError as error:  # from a command not built with cli.base.command
            raise CliError(error.message, error.exit_code) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swallow-trt")
def main() -> None:
    """Llama-3.1-Swallow on TensorRT-LLM and Triton: convert, quantize, serve, benchmark."""


if __name__ == "__main__":
    main()
