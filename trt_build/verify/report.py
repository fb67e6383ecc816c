"""What `verify` reports: the table it prints, and QUANT_REPORT.md (the verification per language and the
calibration per layer) written beside the checkpoint's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trt_build.formats import trtllm_checkpoint as trt
from trt_build.verify.metrics import Report
from trt_build.verify.thresholds import Thresholds


def report_table(report: Report) -> list[str]:
    """The lines `verify` prints: the figures per language and overall, the thresholds, the precision."""
    lines = [
        f"{'lang':<5}{'texts':>6}{'tokens':>7}{'cosine':>9}{'max|dlogit|':>13}{'top-1':>8}"
        f"{'ppl src':>10}{'ppl ckpt':>10}{'ppl diff':>10}"
    ]
    rows = list(report.languages.values()) + ([report.overall] if report.overall else [])
    for r in rows:
        lines.append(
            f"{r.language:<5}{r.texts:>6}{r.tokens:>7}{r.cosine_similarity:>9.5f}{r.max_abs_logit_diff:>13.4g}"
            f"{r.top1_agreement:>8.3f}{r.ppl_source:>10.2f}{r.ppl_checkpoint:>10.2f}{r.ppl_rel_diff:>10.3%}"
        )
    t = report.thresholds
    lines.append(
        f"thresholds per language: cosine >= {t.min_cosine_similarity}, max|dlogit| {_diff_bound(t)}, "
        f"top-1 >= {t.min_top1_agreement}, perplexity change <= {t.max_ppl_rel_diff:.2%}"
    )
    lines.append(f"precision {report.precision}: {t.note}")
    return lines


def quant_report_markdown(report: Report, checkpoint_dir: Path) -> str:
    """QUANT_REPORT.md: the verification per language and the calibration per layer, readable."""
    t = report.thresholds
    lines = [
        f"# Quantization report: {Path(checkpoint_dir).name}",
        "",
        f"Precision `{report.precision}` ({t.note}). Quantization block: `{json.dumps(report.quantization)}`.",
        f"Result: **{'PASSED' if report.passed else 'FAILED'}**"
        + ("" if report.passed else " — " + "; ".join(report.failures)),
        "",
        f"## Against the source model ({report.text_set} texts)",
        "",
        "Cosine similarity of the logit vectors (mean and worst position), top-1 agreement of the next-token",
        "argmax, and perplexity of both models on the same texts.",
        "",
        "| language | texts | tokens | cosine mean | cosine min | max abs logit diff | top-1 | ppl source "
        "| ppl checkpoint | ppl change |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = list(report.languages.values()) + ([report.overall] if report.overall else [])
    for r in rows:
        lines.append(
            f"| {r.language} | {r.texts} | {r.tokens} | {r.cosine_similarity:.5f} | {r.min_cosine_similarity:.5f} "
            f"| {r.max_abs_logit_diff:.4g} | {r.top1_agreement:.3f} | {r.ppl_source:.3f} | {r.ppl_checkpoint:.3f} "
            f"| {r.ppl_checkpoint / r.ppl_source - 1:+.3%} |"
        )
    lines += [
        "",
        f"Thresholds (each language): cosine >= {t.min_cosine_similarity}, top-1 >= {t.min_top1_agreement}, "
        f"perplexity change <= {t.max_ppl_rel_diff:.2%}, max abs logit diff {_diff_bound(t)}.",
        "",
    ]
    calibration = report.calibration
    if not calibration:
        lines += ["No calibration (weight-only schemes are quantized by trtllm-build from bf16).", ""]
        return "\n".join(lines)
    data = calibration.get("data") or {}
    lines += [
        "## Calibration",
        "",
        f"- data: `{data.get('source', '?')}`, {calibration.get('calib_size')} x {calibration.get('calib_seq_len')} "
        f"tokens, tokens sha256 `{calibration.get('tokens_sha256')}`",
        f"- categories: {json.dumps(data.get('categories', {}), ensure_ascii=False)}",
        f"- algorithms: {', '.join(calibration.get('algorithms') or [])}; device {calibration.get('device')}; "
        f"group size {calibration.get('group_size')}; {calibration.get('seconds')} s in all"
        + (f" (reused from `{calibration['reused_from']}`)" if calibration.get("reused_from") else ""),
        "",
        "## Per layer",
        "",
    ]
    layers = calibration.get("layers") or []
    groups = ("qkv", "o", "gate_up", "down")
    header = ["layer", "seconds"] + [f"{g} input amax" for g in groups]
    extra = [
        key
        for key in (trt.ACTIVATION_SCALE, trt.WEIGHTS_SCALE, "alpha", "mse_rtn", "mse_awq")
        if any(key in layer.get("qkv", {}) for layer in layers)
    ]
    header += [f"{g} {key}" for key in extra for g in groups]
    has_kv = any("kv_cache" in layer for layer in layers)
    if has_kv:
        header += ["k amax", "v amax", "kv scale"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for layer in layers:
        cells = [str(layer["layer"]), f"{layer.get('seconds') or 0:.3f}"]
        cells += [f"{layer[g]['input_amax']:.4g}" for g in groups]
        cells += [_cell(layer[g].get(key)) for key in extra for g in groups]
        if has_kv:
            kv = layer.get("kv_cache", {})
            cells += [
                _cell(kv.get("k_amax")),
                _cell(kv.get("v_amax")),
                _cell(kv.get(trt.KV_CACHE_SCALE)),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _diff_bound(thresholds: Thresholds) -> str:
    bound = thresholds.max_abs_logit_diff
    return "not gated" if bound is None else f"<= {bound}"


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.4g}"


def write_quant_report(report: Report, checkpoint_dir: Path) -> Path:
    """QUANT_REPORT.md beside the rank files (trtllm-build ignores extra files), written atomically."""
    path = Path(checkpoint_dir) / "QUANT_REPORT.md"
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(quant_report_markdown(report, checkpoint_dir), encoding="utf-8")
    temporary.replace(path)
    return path
