"""The rule tables both targets are composed from (the trtllm-build flags, the LLM-API options).

A rule is a row: when it applies, what it sets, and why; the settings are the rows that apply, in
order, each with its reason, so `build --dry-run` and `plan` print the reason beside every setting.
Refusals (it cannot work) and warnings (it works, at a cost the user should know) are rows too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Request = TypeVar("Request")
Settings = TypeVar("Settings")


@dataclass(frozen=True)
class Rule(Generic[Request, Settings]):
    applies: Callable[[Request], bool]
    settings: Callable[[Request], Settings]
    reason: str


@dataclass(frozen=True)
class Check(Generic[Request]):
    """A refusal (the build cannot work) or a warning (it works, with a cost the user should know)."""

    applies: Callable[[Request], bool]
    message: Callable[[Request], str]


def always(request: object) -> bool:
    return True


# Both targets: tensor parallelism across GPUs that only PCIe connects (the request's .tp and .gpu).
TP_OVER_PCIE: Check[Any] = Check(
    lambda r: r.tp > 1 and not r.gpu.nvlink,
    lambda r: (
        f"TP {r.tp} on {r.gpu.name} (PCIe, no NVLink): two all-reduces per layer cross PCIe; "
        "prefer a quantization that fits one GPU, or pipeline parallelism."
    ),
)


def applied(rules: Sequence[Rule[Request, Settings]], request: Request) -> list[tuple[Settings, str]]:
    """(settings, reason) of every rule that applies to `request`, in table order."""
    return [(rule.settings(request), rule.reason) for rule in rules if rule.applies(request)]


def messages(checks: Sequence[Check[Request]], request: Request) -> list[str]:
    """The message of every check that applies to `request`, in table order."""
    return [check.message(request) for check in checks if check.applies(request)]
