"""What a long stage tells the person running it while it runs: warnings, the command it starts, that
command's own output. Library code prints these itself because they must appear as they happen (a
trtllm-build can run for an hour); results are returned and errors raised, never printed here."""

from __future__ import annotations

import sys


def say(message: str, *, err: bool = False, end: str = "\n") -> None:
    """Print one message to stdout (or stderr with `err`), flushed at once so a pipe or a log sees it."""
    print(message, end=end, file=sys.stderr if err else sys.stdout, flush=True)
