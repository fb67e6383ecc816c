"""What a benchmark tells the person running it while it runs: each level's line, notes, warnings.

Library code prints these itself because they must appear as they happen (a sweep can run for hours);
each line is flushed at once so a pipe or a log sees it live. Errors are raised, never printed here.
"""

from __future__ import annotations

import sys


def say(message: str, *, err: bool = False, end: str = "\n") -> None:
    """Print one message to stdout (or stderr with `err`), flushed."""
    print(message, end=end, file=sys.stderr if err else sys.stdout, flush=True)
