"""`swallow-trt verify`: does a TensorRT-LLM checkpoint compute what its Hugging Face source computes?

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import torch

from trt_build.hf_config import LlamaArchitecture, read_hf_config
from trt_build.reference_runtime import (
    CheckpointError,
    architecture_from_checkpoint,
    build_model,
    load_checkpoint,
    read_checkpoint_config,
)

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
    max_abs_logit_diff: float
    min_top1_agreement: float
    max_ppl_rel_diff: float
    note: str


# Precision of the checkpoint -> what it must reach against the source model. "exact": unquantized in
# the source's own dtype, which must give bit-identical logits. Other dtypes: the weights convert exactly
# or nearly (bf16 -> fp16 is exact but for magnitudes below 2^-24), so the differences come from the
# activations being rounded differently (about 2^-9 relative per op for fp16 against 2^-8 for bf16).
# Measured bf16 -> fp16 on the tiny preset (logits of magnitude ~1): max |diff| 0.0049, top-1 agreement
# 0.974 (random weights leave many near-ties), perplexity +0.006%. The absolute bound leaves headroom for
# real models, whose logits reach ~30; top-1 agreement and perplexity are the sharper tests there.
# Quantized precisions are keyed by quant_algo ("FP8", "W4A16_AWQ", ...) and added with their schemes.
THRESHOLDS: dict[str, Thresholds] = {
    "exact": Thresholds(0.0, 1.0, 0.0, "same dtype, unquantized: logits must be bit-identical"),
    "float16": Thresholds(1.0, 0.90, 0.02, "bf16/fp32 source in fp16: activation rounding only"),
    "bfloat16": Thresholds(2.0, 0.85, 0.03, "fp16/fp32 source in bf16: activation rounding only"),
    "float32": Thresholds(1.0, 0.90, 0.02, "bf16/fp16 source in fp32: activation rounding only"),
}


def precision_key(checkpoint_config: dict[str, Any], source_dtype: str) -> str:
    """The THRESHOLDS key of a checkpoint: its quant_algo when quantized, else 'exact' or its dtype."""
    quant_algo = (checkpoint_config.get("quantization") or {}).get("quant_algo")
    if quant_algo:
        return str(quant_algo)
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

    @property
    def passed(self) -> bool:
        return not self.failures


def load_hf_model(model_dir: Path, device: str = "cpu"):
    """The source model from its safetensors (never pickle, never repo code), in its config dtype."""
    from safetensors import safe_open

    from trt_build.convert import SourceCheckpoint

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


def _perplexity(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int]:
    """(sum of next-token NLL, count) of one sequence."""
    nll = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="sum")
    return float(nll), ids.numel() - 1


def compare(
    source_model, checkpoint_model, texts: list[tuple[str, str]], tokenizer, precision: str
) -> Report:
    thresholds = THRESHOLDS.get(precision)
    if thresholds is None:
        raise click.ClickException(
            f"no verification thresholds for precision {precision!r} (known: {', '.join(THRESHOLDS)})."
        )
    results, nll_source, nll_checkpoint, count, agree, max_diff = [], 0.0, 0.0, 0, 0, 0.0
    for language, text in texts:
        ids = torch.tensor([tokenizer(text, add_special_tokens=True)["input_ids"]])
        with torch.no_grad():
            a = source_model(ids).logits[0].float()
            b = checkpoint_model(ids).logits[0].float()
        diff = float((a - b).abs().max())
        same = int((a.argmax(-1) == b.argmax(-1)).sum())
        sa, n = _perplexity(a, ids[0])
        sb, _ = _perplexity(b, ids[0])
        results.append(
            TextResult(language, ids.shape[1], diff, same / ids.shape[1], math.exp(sa / n), math.exp(sb / n))
        )
        max_diff, agree = max(max_diff, diff), agree + same
        nll_source, nll_checkpoint, count = nll_source + sa, nll_checkpoint + sb, count + n
    positions = sum(result.tokens for result in results)
    ppl_source, ppl_checkpoint = math.exp(nll_source / count), math.exp(nll_checkpoint / count)
    report = Report(
        precision,
        thresholds,
        results,
        max_diff,
        agree / positions,
        ppl_source,
        ppl_checkpoint,
        abs(ppl_checkpoint / ppl_source - 1),
        [],
    )
    if report.max_abs_logit_diff > thresholds.max_abs_logit_diff:
        report.failures.append(f"max |logit diff| {max_diff:.4g} > {thresholds.max_abs_logit_diff}")
    if report.top1_agreement < thresholds.min_top1_agreement:
        report.failures.append(
            f"top-1 agreement {report.top1_agreement:.4f} < {thresholds.min_top1_agreement}"
        )
    if report.ppl_rel_diff > thresholds.max_ppl_rel_diff:
        report.failures.append(
            f"perplexity differs by {report.ppl_rel_diff:.4%} > {thresholds.max_ppl_rel_diff:.2%}"
        )
    return report


def read_prompts(path: Path) -> list[tuple[str, str]]:
    """Texts from a file: JSONL ({"text": ...} or {"prompt": ...}, optional "language") or one per line."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in lines]
        texts = [(row.get("language", "?"), row.get("text") or row.get("prompt") or "") for row in rows]
    else:
        texts = [("?", line) for line in lines]
    texts = [(language, text) for language, text in texts if text]
    if not texts:
        raise click.ClickException(f"{path} holds no prompts.")
    return texts


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    from trt_build.tokenizer import ensure_tokenizer

    source = model_dir if (model_dir / "tokenizer.json").is_file() else ensure_tokenizer()
    return AutoTokenizer.from_pretrained(source)


def verify_checkpoint(
    model_dir: Path, checkpoint_dir: Path, texts: list[tuple[str, str]] | None = None
) -> Report:
    try:
        config = read_checkpoint_config(checkpoint_dir)
        _check_same_model(read_hf_config(model_dir), architecture_from_checkpoint(config))
        arch, source_model = load_hf_model(model_dir)
        checkpoint_model = load_checkpoint(checkpoint_dir)
    except CheckpointError as error:
        raise click.ClickException(f"cannot load {checkpoint_dir}: {error}") from error
    precision = precision_key(config, arch.dtype)
    return compare(
        source_model, checkpoint_model, texts or list(BUILTIN_TEXTS), _tokenizer(model_dir), precision
    )


def _print_report(report: Report) -> None:
    click.echo(f"{'lang':<5}{'tokens':>7}{'max|dlogit|':>13}{'top-1':>8}{'ppl src':>10}{'ppl ckpt':>10}")
    for r in report.texts:
        click.echo(
            f"{r.language:<5}{r.tokens:>7}{r.max_abs_logit_diff:>13.4g}{r.top1_agreement:>8.3f}"
            f"{r.ppl_source:>10.2f}{r.ppl_checkpoint:>10.2f}"
        )
    t = report.thresholds
    click.echo(
        f"all  max|dlogit| {report.max_abs_logit_diff:.4g} (<= {t.max_abs_logit_diff}), top-1 agreement "
        f"{report.top1_agreement:.4f} (>= {t.min_top1_agreement}), perplexity {report.ppl_source:.3f} -> "
        f"{report.ppl_checkpoint:.3f} ({report.ppl_rel_diff:.3%}, <= {t.max_ppl_rel_diff:.2%})"
    )
    click.echo(f"precision {report.precision}: {t.note}")


@click.command()
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
    help="TensorRT-LLM checkpoint directory written by `swallow-trt convert`.",
)
@click.option(
    "--prompts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Texts to use instead of the built-in Japanese/English set: one per line, or JSONL with 'text'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(model_dir: Path, checkpoint: Path, prompts: Path | None, as_json: bool) -> None:
    """Compare a checkpoint's logits and perplexity with its source model; exit 1 beyond the thresholds."""
    report = verify_checkpoint(model_dir, checkpoint, read_prompts(prompts) if prompts else None)
    if as_json:
        click.echo(json.dumps({**asdict(report), "passed": report.passed}, ensure_ascii=False, indent=2))
    else:
        _print_report(report)
    if not report.passed:
        click.echo("FAILED: " + "; ".join(report.failures), err=True)
        raise SystemExit(1)
    if not as_json:
        click.echo("PASSED")
