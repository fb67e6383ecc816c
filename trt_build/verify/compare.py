"""`swallow-trt verify`: does a converted checkpoint compute what its Hugging Face source computes?

Both convert targets are read: TensorRT-LLM checkpoints and ModelOpt unified HF checkpoints (the reference
runtime's `load_checkpoint` / `load_unified_checkpoint`). The source model and the checkpoint run on the same
texts (`texts`); the metrics and their thresholds, keyed by the checkpoint's precision, are `metrics` and
`thresholds`; the report is `report`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import read_json_object
from trt_build.formats.kinds import TRTLLM_CHECKPOINT, checkpoint_kind
from trt_build.formats.trtllm_config import CheckpointError, read_trtllm_checkpoint
from trt_build.source.checkpoint import SourceCheckpoint, torch_dtype
from trt_build.source.files import SourceHasher, file_inside
from trt_build.source.hf_config import LlamaArchitecture, read_hf_config
from trt_build.source.registry import parameter_count
from trt_build.verify.metrics import Report, compare
from trt_build.verify.reference_runtime import build_model, load_checkpoint, load_unified_checkpoint
from trt_build.verify.report import write_quant_report
from trt_build.verify.texts import BUILTIN_TEXTS, eval_texts, read_prompts, tokenize, tokenizer_for
from trt_build.verify.thresholds import is_quantized, precision_key


def compute_dtype(arch: LlamaArchitecture) -> torch.dtype:
    """float32 when both models fit in it, else the config dtype.

    CPUs without bf16 matrix units multiply bf16 several times slower than float32, and float32 arithmetic
    makes the comparison measure the checkpoint's numbers rather than two rounding paths. Verify holds the
    source and the checkpoint at once: 8 bytes per parameter in float32, which an 8B model may not have.
    """
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return torch.float32 if 8 * parameter_count(arch) < available // 2 else torch_dtype(arch.dtype)


def load_hf_model(model_dir: Path, dtype: torch.dtype | None = None, device: str = "cpu"):
    """The source model from its safetensors (never pickle, never repo code), in `dtype` (default: its
    config dtype)."""
    arch = read_hf_config(model_dir)
    state = SourceCheckpoint(model_dir).tensors(lambda name: name.startswith(("model.", "lm_head.")))
    dtype = dtype or torch_dtype(arch.dtype)
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
        raise SwallowTrtError(
            f"this checkpoint was not made from this model ({'; '.join(differ)});",
            "pass the --model-dir it was converted from.",
        )


def _check_made_from(model_dir: Path, checkpoint_dir: Path) -> None:
    """The source files the checkpoint's manifest recorded (name, size, sha256) are those of `model_dir`. A model
    of the same shape but other weights would otherwise run, and fail on its logits without saying why.
    Sizes are compared first; digests only when every size matches (reusing known ones, `SourceHasher`)."""
    manifest = Path(checkpoint_dir) / "manifest.json"
    if not manifest.is_file():
        return
    source = read_json_object(manifest).get("source") or {}
    recorded = {entry.get("name"): entry for entry in source.get("files") or [] if isinstance(entry, dict)}
    paths = {name: file_inside(model_dir, name) for name in recorded}
    differ = [
        f"{name} is not in {model_dir}" for name, path in paths.items() if not (path and path.is_file())
    ]
    differ += [
        f"{name} has {path.stat().st_size} bytes, {recorded[name].get('bytes')} at conversion"
        for name, path in paths.items()
        if path and path.is_file() and path.stat().st_size != recorded[name].get("bytes")
    ]
    if not differ and any(entry.get("sha256") for entry in recorded.values()):
        hasher = SourceHasher([path for path in paths.values() if path], Path(model_dir))
        hasher.start()
        differ = [
            f"{entry['name']} has sha256 {entry['sha256'][:12]}..., {recorded[entry['name']]['sha256'][:12]}... "
            "at conversion"
            for entry in hasher.result()
            if recorded[entry["name"]].get("sha256") not in (None, entry["sha256"])
        ]
    if differ:
        raise SwallowTrtError(
            f"this checkpoint was not made from this model: {'; '.join(differ[:3])}"
            f"{' ...' if len(differ) > 3 else ''}.",
            f"Pass the --model-dir it was converted from ({source.get('model_dir', 'see its manifest.json')}).",
        )


def _checkpoint_calibration(checkpoint_dir: Path) -> dict[str, Any] | None:
    manifest = Path(checkpoint_dir) / "manifest.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text()).get("calibration")


def checkpoint_view(checkpoint_dir: Path) -> tuple[dict[str, Any], LlamaArchitecture, Callable[[Path], Any]]:
    """(config with `dtype` and `quantization` keys, architecture, loader) of either checkpoint kind
    (`formats.kinds.checkpoint_kind`): a TRT-LLM checkpoint, or a Hugging Face / ModelOpt unified one whose
    hf_quant_config.json quantization block takes the place of the TRT-LLM `quantization` block."""
    kind = checkpoint_kind(Path(checkpoint_dir))
    if kind.kind == TRTLLM_CHECKPOINT:
        checkpoint = read_trtllm_checkpoint(checkpoint_dir, check_ranks=False)
        return checkpoint.config, checkpoint.arch, load_checkpoint
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
        _check_made_from(model_dir, checkpoint_dir)
        dtype = compute_dtype(checkpoint_arch)
        arch, source_model = load_hf_model(model_dir, dtype)
        checkpoint_model = loader(checkpoint_dir, dtype=dtype)
    except CheckpointError as error:
        raise SwallowTrtError(f"cannot load {checkpoint_dir}: {error.message}") from error
    precision = precision_key(config, arch.dtype)
    tokenizer = tokenizer_for(model_dir)
    if texts is not None:
        token_texts, text_set = tokenize(texts, tokenizer), "prompts"
    elif is_quantized(config):
        token_texts, text_set = eval_texts(tokenizer), "eval"
    else:
        token_texts, text_set = tokenize(list(BUILTIN_TEXTS), tokenizer), "builtin"
    report = compare(source_model, checkpoint_model, token_texts, precision)
    report.text_set = text_set
    report.quantization = dict(config.get("quantization") or {})
    report.calibration = _checkpoint_calibration(checkpoint_dir)
    return report


@dataclass(frozen=True)
class VerifyOptions:
    """Everything `swallow-trt verify` is told."""

    model_dir: Path
    checkpoint: Path
    prompts: Path | None = None  # texts instead of the built-in / evaluation set
    write_report: bool | None = None  # QUANT_REPORT.md; None: for quantized checkpoints


@dataclass(frozen=True)
class Verified:
    report: Report
    report_path: Path | None  # QUANT_REPORT.md, when written


def verify(options: VerifyOptions) -> Verified:
    """`swallow-trt verify`: compare, and write QUANT_REPORT.md into the checkpoint when asked (by default for
    a quantized checkpoint). Whether it passed is `report.passed`."""
    texts = read_prompts(options.prompts) if options.prompts else None
    report = verify_checkpoint(options.model_dir, options.checkpoint, texts)
    write = options.write_report
    if write is None:
        write = is_quantized(checkpoint_view(options.checkpoint)[0])
    return Verified(report, write_quant_report(report, options.checkpoint) if write else None)
