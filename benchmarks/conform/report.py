"""The conform report: a pass/fail table per path and check, the failures spelled out, and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.conform.checks import CHECKS, FAIL, PASS, PathRun, describe_checks
from benchmarks.conform.checks import Context as CheckContext

MARKS = {PASS: "pass", FAIL: "FAIL"}  # anything else (skip) prints as "-"


@dataclass(frozen=True)
class PathReport:
    path: str
    streamed: bool
    reference: str
    answer: str
    outcomes: dict[str, Any]  # check name -> Outcome


@dataclass
class Report:
    url: str
    protocol: str
    target: str  # the Triton front models, or the OpenAI model
    concurrency: int
    max_tokens: int
    paths: list[PathReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        """(path, check, detail) of every failed check, in table order."""
        return [
            (row.path, name, outcome.detail)
            for row in self.paths
            for name, outcome in row.outcomes.items()
            if outcome.status == FAIL
        ]

    @property
    def passed(self) -> bool:
        return bool(self.paths) and not self.failures


def build_report(report: Report, runs: list[PathRun], context: CheckContext) -> Report:
    """Run every check of `CHECKS` on every path into `report`."""
    for run in runs:
        outcomes = {name: check(run, context) for name, check in CHECKS.items()}
        report.paths.append(
            PathReport(run.path.name, run.path.streamed, run.path.reference, run.answer.text, outcomes)
        )
    return report


def format_table(report: Report) -> str:
    names = list(CHECKS)
    width = max([len("path"), *(len(row.path) for row in report.paths)])
    lines = [
        f"conform {report.url} ({report.protocol}: {report.target}; max_tokens {report.max_tokens}, "
        f"{report.concurrency} concurrent requests per path)",
        *(f"note: {note}" for note in report.notes),
        "",
        "  ".join([f"{'path':{width}}", *names]),
    ]
    for row in report.paths:
        cells = [f"{MARKS.get(row.outcomes[name].status, '-'):{len(name)}}" for name in names]
        lines.append("  ".join([f"{row.path:{width}}", *cells]).rstrip())
    references = {row.path: row.answer for row in report.paths if row.path == row.reference}
    lines.append("")
    lines += [f"non-streamed answer of {path}: {answer[:160]!r}" for path, answer in references.items()]
    failures = report.failures
    if failures:
        lines += ["", "failures:"]
        lines += [f"  {path}  {check}: {detail}" for path, check, detail in failures]
    total = sum(len(row.outcomes) for row in report.paths)
    verdict = "PASS" if report.passed else f"FAIL: {len(failures)} of {total} checks failed"
    lines += ["", f"result: {verdict}"]
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    return {
        "url": report.url,
        "protocol": report.protocol,
        "target": report.target,
        "max_tokens": report.max_tokens,
        "concurrency": report.concurrency,
        "notes": report.notes,
        "checks": describe_checks(),
        "paths": [
            {
                "path": row.path,
                "streamed": row.streamed,
                "reference": row.reference,
                "answer": row.answer,
                "checks": {
                    name: {"status": outcome.status, "detail": outcome.detail}
                    for name, outcome in row.outcomes.items()
                },
            }
            for row in report.paths
        ],
        "failures": [
            {"path": path, "check": check, "detail": detail} for path, check, detail in report.failures
        ],
        "passed": report.passed,
    }
