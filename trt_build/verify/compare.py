"""`swallow-trt verify`: does a converted checkpoint compute what its Hugging Face source computes?

Both convert targets are read: TensorRT-LLM checkpoints and ModelOpt unified HF checkpoints (the
reference runtime's `load_checkpoint` / `load_unified_checkpoint`); the thresholds are keyed by precision.

The source model and the checkpoint (loaded back by the reference runtime) run on the same Japanese and
English texts. Metrics (over every next-token position of every text):
  max_abs_logit_diff  max |logit_source - logit_checkpoint|, in float32
  top1_agreement      fraction of positions where both models' argmax token is the same
  perplexity          exp(mean next-token negative log-likelihood), for each model
  ppl_rel_diff        |ppl_checkpoint / ppl_source - 1|
The run fails when a metric is beyond `THRESHOLDS` for the checkpoint's precision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import torch

from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.jsonl import json_lines
from trt_build.formats.kinds import TRTLLM_CHECKPOINT, checkpoint_kind
from trt_build.formats.trtllm_config import (
    CheckpointError,
    architecture_from_checkpoint,
    read_checkpoint_config,
)
from trt_build.source.hf_config import LlamaArchitecture, read_hf_config
from trt_build.verify.reference_runtime import build_model, load_checkpoint, load_unified_checkpoint

# (language, text): short, everyday and technical, so both scripts and number/code tokens appear.
BUILTIN_TEXTS: tuple[tuple[str, str], ...] = (
    ("ja", "東京工業大学と産業技術総合研究所は、日本語に強い大規模言語モデルを共同で開発している。"),
    ("ja", "今日は朝から雨が降っていたので、駅まで歩くのをやめてバスに乗ることにした。"),
    ("ja", "テンソル並列では、各GPUが重み行列の一部だけを持ち、計算結果を通信で集める。"),
    ("ja", "富士山の標高は三千七百七十六メートルで、日本で最も高い山として知られています。"),
    ("en", "The quick brown fox jumps over the lazy dog while the farmer watches from the porch."),
    ("en", "Tensor parallelism splits each weight matrix across GPUs and gathers the partial results."),
    ("en", "In 1969, Apollo 11 landed on the Moon and Neil Armstrong took the first steps outside."),
    ("en", "def add(a: int, b: int) -> int:\n    return a + b  # a tiny Python function"),
)


@dataclass(frozen=True)
class Thresholds:
    max_abs_logit_diff: float | None  # None: reported, not gated
    min_top1_agreement: float
    max_ppl_rel_diff: float
    note: str
    min_cosine_similarity: float = 0.0  # mean over positions of cos(logits_source, logits_checkpoint)


# Precision of the checkpoint -> what it must reach against the source model, in every language of the
# texts (ja and en are checked separately). "exact": unquantized in the source's own dtype, which must
# give bit-identical logits. Other dtypes: the weights convert exactly or nearly (bf16 -> fp16 is exact
# but for magnitudes below 2^-24), so the differences come from the activations being rounded
# differently (about 2^-9 relative per op for fp16 against 2^-8 for bf16). Measured bf16 -> fp16 on the
# tiny preset (logits of magnitude ~1): max |diff| 0.0049, top-1 agreement 0.974 (random weights leave
# many near-ties), perplexity +0.006%. The absolute bound leaves headroom for real models, whose logits
# reach ~30; top-1 agreement and perplexity are the sharper tests there.
THRESHOLDS: dict[str, Thresholds] = {
    "exact": Thresholds(0.0, 1.0, 0.0, "same dtype, unquantized: logits must be bit-identical", 0.9999),
    "float16": Thresholds(1.0, 0.90, 0.02, "bf16/fp32 source in fp16: activation rounding only", 0.999),
    "bfloat16": Thresholds(2.0, 0.85, 0.03, "fp16/fp32 source in bf16: activation rounding only", 0.999),
    "float32": Thresholds(1.0, 0.90, 0.02, "bf16/fp16 source in fp32: activation rounding only", 0.999),
}
# Quantized precisions: quant_algo, "+FP8_KV" with an FP8 KV cache ("FP8_KV" alone over unquantized
# weights). Cosine similarity and top-1 bounds come from the TINY model (random weights, 2 layers, hidden
# 64), measured with `swallow-trt verify --json` on the held-out eval set after `convert --calib-size 16
# --calib-seq-len 64` (AWQ --group-size 16), TP1 and TP2, identical to 4 digits. The cosine bound allows
# about 3x the measured loss (1 - cosine): FP8 5.7e-4, FP8+KV 6.9e-4, AWQ 2.5e-3, W8A16 4e-5, W4A16 4.8e-3,
# FP8 KV alone 1.2e-4 (worse language). Top-1 allows about 0.1 below the measured 0.76-0.98 (random
# weights leave many near-ties). The tiny model's perplexity hardly moves (its distribution is nearly
# flat, +0.2 % at most), so the perplexity bounds are those a real model may lose (bench-metrics.md sec. 4:
# FP8 ~lossless, INT4 2-6 % MMLU on 8B), not tiny figures. max |dlogit| grows with the logit scale of a
# real model, so it is reported but not gated (None). Real-model runs should confirm these bounds.
QUANTIZED_THRESHOLDS: dict[str, tuple[float, float, float, str]] = {
    # key: (min cosine, min top-1, max ppl rel diff, note)
    "FP8": (0.998, 0.80, 0.02, "FP8 e4m3 weights and activations, per-tensor static scales"),
    "FP8+FP8_KV": (0.997, 0.80, 0.03, "FP8 weights and activations, FP8 KV cache"),
    "W4A16_AWQ": (0.992, 0.70, 0.08, "INT4 AWQ weights (group-wise), bf16 activations"),
    "W4A16_AWQ+FP8_KV": (0.992, 0.70, 0.09, "INT4 AWQ weights, FP8 KV cache"),
    "W8A16": (0.9998, 0.85, 0.01, "INT8 weight-only per channel (trtllm-build amax/128)"),
    "W8A16+FP8_KV": (0.9995, 0.85, 0.02, "INT8 weight-only, FP8 KV cache"),
    "W4A16": (0.985, 0.65, 0.12, "INT4 weight-only per channel (trtllm-build amax/8)"),
    "W4A16+FP8_KV": (0.985, 0.65, 0.13, "INT4 weight-only, FP8 KV cache"),
    "FP8_KV": (0.9995, 0.85, 0.01, "unquantized weights, FP8 KV cache"),
}
THRESHOLDS.update(
    {
        key: Thresholds(None, top1, ppl, note + " (cosine/top-1 bounds from the tiny model)", cosine)
        for key, (cosine, top1, ppl, note) in QUANTIZED_THRESHOLDS.items()
    }
)


def is_quantized(checkpoint_config: dict[str, Any]) -> bool:
    quantization = checkpoint_config.get("quantization") or {}
    return bool(quantization.get("quant_algo") or quantization.get("kv_cache_quant_algo"))


def precision_key(checkpoint_config: dict[str, Any], source_dtype: str) -> str:
    """The THRESHOLDS key of a checkpoint: its quant_algo when quantized (+FP8_KV with an FP8 KV
    cache), else 'exact' or its dtype."""
    quantization = checkpoint_config.get("quantization") or {}
    quant_algo, kv = quantization.get("quant_algo"), quantization.get("kv_cache_quant_algo")
    if quant_algo:
        return str(quant_algo) + (f"+{kv}_KV" if kv else "")
    if kv:
        return f"{kv}_KV"
    dtype = str(checkpoint_config.get("dtype", "bfloat16"))
    return "exact" if dtype == source_dtype else dtype


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


def load_hf_model(model_dir: Path, device: str = "cpu"):
    """The source model from its safetensors (never pickle, never repo code), in its config dtype."""
    from safetensors import safe_open

    from trt_build.source.checkpoint import SourceCheckpoint

    arch = read_hf_config(model_dir)
    source = SourceCheckpoint(model_dir)
    wanted = {name for name in source.location if name.startswith(("model.", "lm_head."))}
    state: dict[str, torch.Tensor] = {}
    for path in source.files:
        with safe_open(path, framework="pt") as handle:
            state.update({name: handle.get_tensor(name) for name in handle.keys() if name in wanted})  # noqa: SIM118
    dtype = getattr(torch, arch.dtype)
    return arch, build_model(arch, {name: tensor.to(dtype) for name, tensor in state.items()}, device)


def _check_same_model(source: LlamaArchitecture, checkpoint: LlamaArchitecture) -> None:
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    differ = [f"{name} {getattr(source, name)} vs {getattr(checkpoint, name)}" for name in fields]
    differ = [
        text
        for name, text in zip(fields, differ, strict=True)
        if getattr(source, name) != getattr(checkpoint, name)
    ]
    if differ:
        raise click.ClickException(
            f"the checkpoint was not converted from this model ({'; '.join(differ)}); pass the matching --model-dir."
        )


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
        raise click.ClickException(
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


def read_prompts(path: Path) -> list[tuple[str, str]]:
    """Texts from a file: JSONL ({"text": ...} or {"prompt": ...}, optional "language") or one per line."""
    if path.suffix == ".jsonl":
        rows = [row if isinstance(row, dict) else {} for _, row in json_lines(path)]
        texts = [(row.get("language", "?"), row.get("text") or row.get("prompt") or "") for row in rows]
    else:
        texts = [("?", line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [(language, text) for language, text in texts if text]
    if not texts:
        raise click.ClickException(f"{path} holds no prompts.")
    return texts


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    from trt_build.source.tokenizer import ensure_tokenizer

    source = model_dir if (model_dir / "tokenizer.json").is_file() else ensure_tokenizer()
    return AutoTokenizer.from_pretrained(source)


def eval_texts(tokenizer) -> list[tuple[str, list[int]]]:
    """The held-out JA/EN evaluation set (never used for calibration) as (language, token ids)."""
    from trt_build.quant.calib_data import load_eval_samples

    return [
        ("en" if sample.category.startswith("en") else "ja", sample.render(tokenizer))
        for sample in load_eval_samples()
    ]


def _checkpoint_calibration(checkpoint_dir: Path) -> dict[str, Any] | None:
    manifest = Path(checkpoint_dir) / "manifest.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text()).get("calibration")


def checkpoint_view(checkpoint_dir: Path) -> tuple[dict[str, Any], LlamaArchitecture, Callable[[Path], Any]]:
    """(config with `dtype` and `quantization` keys, architecture, loader) of either checkpoint kind
    (`targets.checkpoint_kind`): a TRT-LLM checkpoint, or a Hugging Face / ModelOpt unified one whose
    hf_quant_config.json quantization block takes the place of the TRT-LLM `quantization` block."""
    kind = checkpoint_kind(Path(checkpoint_dir))
    if kind.kind == TRTLLM_CHECKPOINT:
        config = read_checkpoint_config(checkpoint_dir)
        return config, architecture_from_checkpoint(config), load_checkpoint
    arch = read_hf_config(checkpoint_dir)
    config = {"dtype": arch.dtype, "quantization": dict(kind.quant_config or {}), "kind": kind.kind}
    return config, arch, load_unified_checkpoint


def verify_checkpoint(
    model_dir: Path, checkpoint_dir: Path, texts: list[tuple[str, str]] | None = None
) -> Report:
    """Compare the checkpoint with its source on `texts`; by default the built-in texts for unquantized
    checkpoints and the held-out JA/EN evaluation set for quantized ones."""
    try:
        config, checkpoint_arch, loader = checkpoint_view(checkpoint_dir)
        _check_same_model(read_hf_config(model_dir), checkpoint_arch)
        arch, source_model = load_hf_model(model_dir)
        checkpoint_model = loader(checkpoint_dir)
    except CheckpointError as error:
        raise click.ClickException(f"cannot load {checkpoint_dir}: {error}") from error
    precision = precision_key(config, arch.dtype)
    tokenizer = _tokenizer(model_dir)
    if texts is not None:
        token_texts, text_set = _tokenize(texts, tokenizer), "prompts"
    elif is_quantized(config):
        token_texts, text_set = eval_texts(tokenizer), "eval"
    else:
        token_texts, text_set = _tokenize(list(BUILTIN_TEXTS), tokenizer), "builtin"
    report = compare(source_model, checkpoint_model, token_texts, precision)
    report.text_set = text_set
    report.quantization = dict(config.get("quantization") or {})
    report.calibration = _checkpoint_calibration(checkpoint_dir)
    return report


def _tokenize(texts: list[tuple[str, str]], tokenizer) -> list[tuple[str, list[int]]]:
    return [(language, tokenizer(text, add_special_tokens=True)["input_ids"]) for language, text in texts]


def _print_report(report: Report) -> None:
    click.echo(
        f"{'lang':<5}{'texts':>6}{'tokens':>7}{'cosine':>9}{'max|dlogit|':>13}{'top-1':>8}"
        f"{'ppl src':>10}{'ppl ckpt':>10}{'ppl diff':>10}"
    )
    rows = list(report.languages.values()) + ([report.overall] if report.overall else [])
    for r in rows:
        click.echo(
            f"{r.language:<5}{r.texts:>6}{r.tokens:>7}{r.cosine_similarity:>9.5f}{r.max_abs_logit_diff:>13.4g}"
            f"{r.top1_agreement:>8.3f}{r.ppl_source:>10.2f}{r.ppl_checkpoint:>10.2f}{r.ppl_rel_diff:>10.3%}"
        )
    t = report.thresholds
    click.echo(
        f"thresholds per language: cosine >= {t.min_cosine_similarity}, max|dlogit| {_diff_bound(t)}, "
        f"top-1 >= {t.min_top1_agreement}, perplexity change <= {t.max_ppl_rel_diff:.2%}"
    )
    click.echo(f"precision {report.precision}: {t.note}")


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
        for key in ("activation_scaling_factor", "weights_scaling_factor", "alpha", "mse_rtn", "mse_awq")
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
                _cell(kv.get("kv_cache_scaling_factor")),
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


@click.command(cls=SwallowTrtCommand)
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The Hugging Face source model directory.",
)
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint written by `swallow-trt convert`: TensorRT-LLM (--target engine) or ModelOpt unified HF "
    "(--target pytorch).",
)
@click.option(
    "--prompts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Texts to use instead of the built-in Japanese/English set: one per line, or JSONL with 'text'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--report/--no-report",
    "write_report",
    default=None,
    help="Write QUANT_REPORT.md into the checkpoint directory [default: for quantized checkpoints].",
)
def command(
    model_dir: Path, checkpoint: Path, prompts: Path | None, as_json: bool, write_report: bool | None
) -> None:
    """Compare a checkpoint's logits and perplexity with its source model; exit 1 beyond the thresholds.

    Quantized checkpoints are compared on the held-out Japanese/English evaluation set, per language.
    """
    report = verify_checkpoint(model_dir, checkpoint, read_prompts(prompts) if prompts else None)
    if write_report if write_report is not None else is_quantized(checkpoint_view(checkpoint)[0]):
        path = write_quant_report(report, checkpoint)
        if not as_json:
            click.echo(f"wrote {path}")
    if as_json:
        click.echo(json.dumps({**asdict(report), "passed": report.passed}, ensure_ascii=False, indent=2))
    else:
        _print_report(report)
    if not report.passed:
        click.echo("FAILED: " + "; ".join(report.failures), err=True)
        raise SystemExit(1)
    if not as_json:
        click.echo("PASSED")
