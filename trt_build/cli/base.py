"""What every `swallow-trt` command shares: domain errors become CLI messages here, and only here."""

from __future__ import annotations

from typing import Any

import click

from trt_build.common.errors import SwallowTrtError, UsageError


class SwallowTrtCommand(click.Command):
    """A click command whose `SwallowTrtError`s are printed as `Error: <problem> <fix>` with their exit
    status, whether it runs under `swallow-trt` or is invoked on its own (tests, CliRunner)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as error:
            raise click.UsageError(error.message, ctx) from None
        except SwallowTrtError as error:
            raise CliError(error.message, error.exit_code) from None


class CliError(click.ClickException):
    """How a SwallowTrtError leaves the CLI: `Error: ...` and its exit status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def command(**settings: Any):
    """`@click.command()` for swallow-trt: `SwallowTrtCommand` as the class."""
    return click.command(cls=SwallowTrtCommand, **settings)
