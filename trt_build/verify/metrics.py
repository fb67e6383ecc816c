"""The metrics `verify` gathers over every next-token position of every text, per text and per language:

  max_abs_logit_diff  max |logit_source - logit_checkpoint|, in float32
  cosine_similarity   mean over positions of cos(logits_source, logits_checkpoint)
  top1_agreement      fraction of positions where both models' argmax token is the same
  perplexity          exp(mean next-token negative log-likelihood), for each model
  ppl_rel_diff        |ppl_checkpoint / ppl_source - 1|

and the verdict: every language (and all texts together) must meet the precision's `THRESHOLDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.verify.thresholds import THRESHOLDS, Thresholds


@dataclass
class TextResult:
    language: str
    tokens: int
    max_abs_logit_diff: float
    top1_agreement: float
    ppl_source: float
    ppl_checkpoint: float
    cosine_similarity: float = 1.0  # mean over positions


@dataclass
class LanguageResult:
    """All texts of one language together (positions pooled)."""

    language: str
    texts: int
    tokens: int
    max_abs_logit_diff: float
    cosine_similarity: float  # mean over positions
    min_cosine_similarity: float  # the worst position
    top1_agreement: float
    ppl_source: float
    ppl_checkpoint: float
    ppl_rel_diff: float


@dataclass
class Report:
    precision: str
    thresholds: Thresholds
    texts: list[TextResult]
    max_abs_logit_diff: float
    top1_agreement: float
    ppl_source: float
    ppl_checkpoint: float
    ppl_rel_diff: float
    failures: list[str]
    cosine_similarity: float = 1.0
    languages: dict[str, LanguageResult] = field(default_factory=dict)
    text_set: str = "builtin"  # builtin | eval (held-out JA/EN set) | a prompts file
    quantization: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # from the checkpoint manifest: data, timings, per layer
    overall: LanguageResult | None = None  # every text together

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class _Accumulator:
    """Per-position figures of one language, pooled over its texts."""

    texts: int = 0
    tokens: int = 0
    max_diff: float = 0.0
    agree: int = 0
    cosines: list[torch.Tensor] = field(default_factory=list)
    nll_source: float = 0.0
    nll_checkpoint: float = 0.0
    predicted: int = 0

    def result(self, language: str) -> LanguageResult:
        cosines = torch.cat(self.cosines)
        ppl_source = math.exp(self.nll_source / self.predicted)
        ppl_checkpoint = math.exp(self.nll_checkpoint / self.predicted)
        return LanguageResult(
            language,
            self.texts,
            self.tokens,
            self.max_diff,
            float(cosines.mean()),
            float(cosines.min()),
            self.agree / self.tokens,
            ppl_source,
            ppl_checkpoint,
            abs(ppl_checkpoint / ppl_source - 1),
        )


def _nll(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """Sum of next-token negative log-likelihoods of one sequence."""
    return float(torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="sum"))


def _check(report: Report) -> None:
    """Every language (and all texts together) must meet the precision's thresholds."""
    t = report.thresholds
    groups = [(f"[{lang}] ", result) for lang, result in report.languages.items()]
    if len(groups) > 1 and report.overall is not None:
        groups.append(("", report.overall))
    for label, r in groups:
        if t.max_abs_logit_diff is not None and r.max_abs_logit_diff > t.max_abs_logit_diff:
            report.failures.append(
                f"{label}max |logit diff| {r.max_abs_logit_diff:.4g} > {t.max_abs_logit_diff}"
            )
        if r.cosine_similarity < t.min_cosine_similarity:
            report.failures.append(
                f"{label}logits cosine similarity {r.cosine_similarity:.5f} < {t.min_cosine_similarity}"
            )
        if r.top1_agreement < t.min_top1_agreement:
            report.failures.append(f"{label}top-1 agreement {r.top1_agreement:.4f} < {t.min_top1_agreement}")
        if r.ppl_rel_diff > t.max_ppl_rel_diff:
            report.failures.append(
                f"{label}perplexity differs by {r.ppl_rel_diff:.4%} > {t.max_ppl_rel_diff:.2%}"
            )


def compare(source_model, checkpoint_model, texts: list[tuple[str, list[int]]], precision: str) -> Report:
    """Run both models on (language, token ids) and gather the metrics, per text and per language."""
    thresholds = THRESHOLDS.get(precision)
    if thresholds is None:
        raise SwallowTrtError(
            f"no verification thresholds for precision {precision!r} (known: {', '.join(THRESHOLDS)})."
        )
    results: list[TextResult] = []
    by_language: dict[str, _Accumulator] = {}
    everything = _Accumulator()
    for language, token_ids in texts:
        ids = torch.tensor([token_ids])
        with torch.no_grad():
            a = source_model(ids).logits[0].float()
            b = checkpoint_model(ids).logits[0].float()
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        diff = float((a - b).abs().max())
        same = int((a.argmax(-1) == b.argmax(-1)).sum())
        sa, sb, n = _nll(a, ids[0]), _nll(b, ids[0]), ids.shape[1] - 1
        results.append(
            TextResult(
                language,
                ids.shape[1],
                diff,
                same / ids.shape[1],
                math.exp(sa / n),
                math.exp(sb / n),
                float(cosine.mean()),
            )
        )
        for acc in (by_language.setdefault(language, _Accumulator()), everything):
            acc.texts, acc.tokens, acc.predicted = acc.texts + 1, acc.tokens + ids.shape[1], acc.predicted + n
            acc.max_diff, acc.agree = max(acc.max_diff, diff), acc.agree + same
            acc.cosines.append(cosine)
            acc.nll_source, acc.nll_checkpoint = acc.nll_source + sa, acc.nll_checkpoint + sb
    total = everything.result("all")
    report = Report(
        precision,
        thresholds,
        results,
        total.max_abs_logit_diff,
        total.top1_agreement,
        total.ppl_source,
        total.ppl_checkpoint,
        total.ppl_rel_diff,
        [],
        cosine_similarity=total.cosine_similarity,
        languages={language: acc.result(language) for language, acc in sorted(by_language.items())},
        overall=total,
    )
    _check(report)
    return report
