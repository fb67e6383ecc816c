"""Load levels: the points of a sweep, and how `--concurrency 1,4,16` / `--request-rate 2,8` spell them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trt_build.common.errors import UsageError


@dataclass(frozen=True)
class LoadLevel:
    """One point of a sweep: `concurrency` (closed loop) or `rate` in requests/s (open loop)."""

    kind: str  # "concurrency" | "rate"
    value: float
    max_concurrency: int | None = None  # open loop only: cap on requests in flight

    @property
    def name(self) -> str:
        value = f"{self.value:g}".replace(".", "p")
        return f"c{value}" if self.kind == "concurrency" else f"rate{value}"

    @property
    def slots(self) -> int | None:
        return int(self.value) if self.kind == "concurrency" else self.max_concurrency

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "max_concurrency": self.max_concurrency}


def parse_levels(
    concurrency: str | None, request_rate: str | None, max_concurrency: int | None
) -> list[LoadLevel]:
    """`--concurrency 1,4,16` or `--request-rate 2,8` (inf allowed) -> load levels."""
    if concurrency and request_rate:
        raise UsageError("Give either --concurrency or --request-rate, not both.")
    spec, kind = (request_rate, "rate") if request_rate else (concurrency or "1", "concurrency")
    levels = []
    for part in spec.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise UsageError(
                f"--{kind.replace('rate', 'request-rate')} {spec!r}: {part!r} is not a number."
            ) from None
        if kind == "concurrency" and (value < 1 or value != int(value)):
            raise UsageError(f"--concurrency values are whole numbers >= 1, got {part}.")
        if kind == "rate" and not value > 0:
            raise UsageError(f"--request-rate values are > 0 requests/s (or inf), got {part}.")
        levels.append(LoadLevel(kind, value, max_concurrency if kind == "rate" else None))
    return levels
