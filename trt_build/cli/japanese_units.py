"""`--isl-chars` / `--osl-chars`: lengths of Japanese traffic in characters, for any command with lengths.

Applied to a command as one decorator (below `@command()`, above its options). Given lengths are converted
with the tokenizer's measured characters per token (trt_build/plan/japanese_units.py); the conversion is
printed before the command's text output; a command printing JSON adds `lengths_json()` to it. A command
that has `--isl` / `--osl` options is run with the converted token counts (giving both forms is refused).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from trt_build.common.errors import UsageError
from trt_build.plan.japanese_units import Conversion, measure

LENGTHS = ("isl", "osl")
META_KEY = "swallow_trt.japanese_lengths"


def _conversions(characters: dict[str, int | None]) -> list[Conversion]:
    given = {name: count for name, count in characters.items() if count is not None}
    if not given:
        return []
    ratio = measure()
    return [Conversion(name.upper(), count, ratio.tokens_for(count), ratio) for name, count in given.items()]


def lengths_json() -> dict[str, object] | None:
    """The conversions of the running command (for its JSON output), or None when no length was in characters."""
    conversions = click.get_current_context().meta.get(META_KEY)
    return {c.name.lower(): c.as_dict() for c in conversions} if conversions else None


def japanese_lengths(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--isl-chars` / `--osl-chars` to a click command function."""
    takes = {p.name for p in getattr(command, "__click_params__", [])} & set(LENGTHS)

    @functools.wraps(command)
    def wrapper(isl_chars: int | None, osl_chars: int | None, **options: Any) -> Any:
        context = click.get_current_context()
        conversions = _conversions({"isl": isl_chars, "osl": osl_chars})
        for conversion in conversions:
            name = conversion.name.lower()
            if name not in takes:
                continue
            if context.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                raise UsageError(f"--{name} and --{name}-chars give the same length: use one.")
            options[name] = conversion.tokens
        context.meta[META_KEY] = conversions
        if not options.get("as_json"):
            for conversion in conversions:
                click.echo(conversion.describe())
        return command(**options)

    for name in reversed(LENGTHS):
        wrapper = click.option(
            f"--{name}-chars",
            type=click.IntRange(min=1),
            default=None,
            help=f"{name.upper()} of Japanese text in characters, converted to tokens with the Swallow "
            "tokenizer's measured characters per token on the built-in Japanese set (the ratio is printed).",
        )(wrapper)
    return wrapper
