"""The checks, one function each, and the table that names them (`CHECKS`), in report order.

Each takes what one path got (its sequential answer, its reference path's answer, its concurrent
answers) and returns pass, fail or skip with a line saying why. Skip means the check cannot be made
on this endpoint (a count it does not report, a character class the answer does not contain), never
that something went wrong: what went wrong fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.conform.paths import Answer, ClientPath
from benchmarks.conform.prompt import LEAKED_TEXT, RenderedPrompt, character_occurrences, shown

PASS, FAIL, SKIP = "pass", "fail", "skip"
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str = ""


@dataclass(frozen=True)
class PathRun:
    """Everything one path got back."""

    path: ClientPath
    answer: Answer  # the sequential request
    reference: Answer  # the sequential answer of the path's reference
    concurrent: list[Answer]  # empty when concurrency was not run


@dataclass(frozen=True)
class Context:
    tokenizer: Any
    prompt: RenderedPrompt
    max_tokens: int


def excerpt(text: str, at: int, width: int = 12) -> str:
    return repr(text[max(0, at - width) : at + width])


def first_difference(got: str, expected: str) -> str:
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    return (
        f"differs at character {at} of {len(expected)}: got {excerpt(got, at)}, "
        f"non-streamed {excerpt(expected, at)}"
    )


def answers(run: PathRun, context: Context) -> Outcome:
    """The request was answered, without an HTTP, gRPC or in-stream error."""
    if run.answer.error:
        return Outcome(FAIL, run.answer.error)
    if not run.answer.text:
        return Outcome(FAIL, "the answer is empty")
    return Outcome(PASS)


def _unanswerable(run: PathRun) -> Outcome | None:
    if run.answer.error:
        return Outcome(SKIP, "no answer")
    if run.reference.error:
        return Outcome(SKIP, f"no non-streamed answer from {run.path.reference} to compare with")
    return None


def exact(run: PathRun, context: Context) -> Outcome:
    """Byte for byte the non-streamed answer of the same front and endpoint."""
    if skip := _unanswerable(run):
        return skip
    if run.path.reference == run.path.name:
        return Outcome(PASS, "the reference")
    if run.answer.text == run.reference.text:
        return Outcome(PASS)
    return Outcome(FAIL, first_difference(run.answer.text, run.reference.text))


def no_replacement(run: PathRun, context: Context) -> Outcome:
    """No U+FFFD that the full decode lacks, in the text or in any streamed response."""
    if skip := _unanswerable(run):
        return skip
    allowed = run.reference.text.count(REPLACEMENT)
    found = run.answer.text.count(REPLACEMENT)
    in_deltas = [i for i, delta in enumerate(run.answer.deltas) if REPLACEMENT in delta]
    if found > allowed or (in_deltas and not allowed):
        where = f" (responses {', '.join(map(str, in_deltas[:8]))})" if in_deltas else ""
        return Outcome(FAIL, f"{found} U+FFFD{where}; the non-streamed answer has {allowed}")
    return Outcome(PASS)


def _few(pieces: list[str]) -> str:
    return " ".join(shown(piece) for piece in pieces[:4]) + (" ..." if len(pieces) > 4 else "")


def characters(run: PathRun, context: Context) -> Outcome:
    """Every character class in the non-streamed answer comes back, the same characters in order."""
    if skip := _unanswerable(run):
        return skip
    expected = character_occurrences(run.reference.text, context.tokenizer)
    if not any(expected.values()):
        return Outcome(SKIP, "the non-streamed answer holds none of the classes (the model did not repeat)")
    got = character_occurrences(run.answer.text, context.tokenizer)
    lost = [
        f"{name} ({_few(expected[name])} -> {_few(got[name]) or 'nothing'})"
        for name in expected
        if expected[name] and got[name] != expected[name]
    ]
    present = sum(1 for name in expected if expected[name])
    if lost:
        return Outcome(FAIL, "lost or changed: " + "; ".join(lost))
    return Outcome(PASS, f"{present} classes")


def one_bos(run: PathRun, context: Context) -> Outcome:
    """The prompt the server counts is the rendered chat with exactly one BOS."""
    if run.answer.error:
        return Outcome(SKIP, "no answer")
    counted, expected = run.answer.prompt_tokens, context.prompt.tokens
    if counted is None:
        return Outcome(SKIP, "the server reports no prompt token count")
    if counted == expected:
        return Outcome(PASS, f"{counted} prompt tokens")
    if counted == expected + 1:
        return Outcome(FAIL, f"{counted} prompt tokens, one more than the tokenizer's {expected}: two BOS")
    return Outcome(
        FAIL,
        f"{counted} prompt tokens, the tokenizer counts {expected} (is --tokenizer the served model's, "
        "with its chat template?)",
    )


def stops(run: PathRun, context: Context) -> Outcome:
    """The answer ends at <|eot_id|>: no special-token or header text leaked, finish_reason stop."""
    if run.answer.error:
        return Outcome(SKIP, "no answer")
    leaked = [text for text in LEAKED_TEXT if text in run.answer.text]
    if leaked:
        return Outcome(FAIL, f"the answer contains {', '.join(leaked)}")
    reason = run.answer.finish_reason
    if reason is not None and reason != "stop":
        return Outcome(FAIL, f"finish_reason {reason!r}, not 'stop'")
    counted = run.answer.completion_tokens
    if reason is None and counted is not None and counted >= context.max_tokens:
        return Outcome(FAIL, f"ran to max_tokens ({context.max_tokens}) instead of stopping")
    if reason is None and counted is None:
        return Outcome(PASS, "no finish reason or token count reported: only leaked text checked")
    return Outcome(PASS)


def usage(run: PathRun, context: Context) -> Outcome:
    """Reported output tokens = the tokenizer's count of the non-streamed answer (+1 when the server
    counts the stop token); total = prompt + output."""
    if skip := _unanswerable(run):
        return skip
    counted = run.answer.completion_tokens
    if counted is None:
        return Outcome(SKIP, "the server reports no output token count")
    expected = len(context.tokenizer.encode(run.reference.text, add_special_tokens=False))
    if counted not in (expected, expected + 1):
        return Outcome(FAIL, f"{counted} output tokens reported, the tokenizer counts {expected}")
    total, prompt = run.answer.total_tokens, run.answer.prompt_tokens
    if total is not None and prompt is not None and total != prompt + counted:
        return Outcome(FAIL, f"total_tokens {total} != prompt {run.answer.prompt_tokens} + {counted}")
    return Outcome(PASS, f"{counted} output tokens" + (" (stop token counted)" if counted > expected else ""))


def concurrency(run: PathRun, context: Context) -> Outcome:
    """Every one of the concurrent answers is the sequential answer, byte for byte."""
    if not run.concurrent:
        return Outcome(SKIP, "not run")
    if run.answer.error:
        return Outcome(SKIP, "no sequential answer")
    differ = [answer for answer in run.concurrent if answer.error or answer.text != run.answer.text]
    if not differ:
        return Outcome(PASS, f"{len(run.concurrent)} identical")
    first = differ[0]
    why = first.error or first_difference(first.text, run.answer.text).replace("non-streamed", "sequential")
    return Outcome(FAIL, f"{len(differ)} of {len(run.concurrent)} differ; first: {why}")


CHECKS: dict[str, Callable[[PathRun, Context], Outcome]] = {
    "answers": answers,
    "exact": exact,
    "no-fffd": no_replacement,
    "characters": characters,
    "one-bos": one_bos,
    "stops": stops,
    "usage": usage,
    "concurrency": concurrency,
}


def describe_checks() -> dict[str, str]:
    """Check name -> its docstring on one line (the report's legend)."""
    return {name: " ".join((check.__doc__ or "").split()) for name, check in CHECKS.items()}
