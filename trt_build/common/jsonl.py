"""JSON Lines files given by users (calibration data, benchmark prompts): one object per line, blank
lines skipped, and an error that names the file and line of a line that does not parse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError


def json_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """("FILE line N", the parsed line) for every non-blank line."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as error:
            raise SwallowTrtError(f"{where}: not valid JSON ({error.msg}).") from None
