"""JSON files given by users: JSON Lines (calibration data, benchmark prompts: one object per line, blank
lines skipped) and single-object files (config.json), with an error that names the file (and line) that does
not parse."""

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


def read_json_object(path: Path, error: type[SwallowTrtError] = SwallowTrtError) -> dict[str, Any]:
    """A file holding one JSON object (config.json, an index), or `error` naming the file and what is wrong."""
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(
            f"{path} is not valid JSON ({problem}).", "Is the file intact? Download it again."
        ) from None
    if not isinstance(found, dict):
        raise error(f"{path} holds a JSON {type(found).__name__}, not an object.", "Is the file intact?")
    return found
