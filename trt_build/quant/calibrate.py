"""Layer-by-layer calibration (max for FP8 / KV, AWQ for INT4) without loading the whole model.

The calibration tokens are embedded once; then, for each decoder layer, one transformers
`LlamaDecoderLayer` is built on the meta device, given only that layer's tensors (read lazily through
convert's own `SourceCheckpoint`, so whatever convert accepts can be calibrated), and the cached hidden
states are pushed through it with hooks that record what the schemes need. The layer's output replaces
the cached hidden states and the layer is freed, so peak memory is one layer plus the activations,
whatever the depth (70B calibrates like 8B, only slower).

Why our own AWQ rather than ModelOpt's `awq_lite` on each layer: ModelOpt searches every linear on
its own and only afterwards re-smooths q/k/v (and gate/up) to an averaged common scale at export time
(`preprocess_linear_fusion`), a scale no search picked. The TRT-LLM format needs one pre-quant scale
for the fused qkv, and the AWQ paper (Lin et al. 2024, sec. 3.2; the reference llm-awq `auto_scale`)
searches q/k/v jointly because they share one input. ModelOpt 0.47 also pins transformers < 5.15
for its HF plugins (we run 5.x) and adds scipy, PuLP, ninja and omegaconf. Max calibration is just
an amax, so ModelOpt would buy nothing there. The search itself: `quant/awq.py`.

The caller opens the source once (`source.checkpoint.open_source`) and hands it over: convert calibrates the
source it is converting; `calibrate_model` opens a model directory for a caller that has none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from trt_build.common.errors import SwallowTrtError
from trt_build.parallel.rules import check_awq_group
from trt_build.quant.awq import AWQ_ALPHAS, awq_search
from trt_build.quant.calibration_result import FUSED_GROUPS, CalibrationResult
from trt_build.quant.schemes import CALIBRATED
from trt_build.source.checkpoint import SourceCheckpoint, open_source
from trt_build.source.hf_config import LLAMA_LINEARS, LlamaArchitecture, read_hf_config, transformers_config

LINEARS = LLAMA_LINEARS  # every one is quantizable
EMBEDDING = "model.embed_tokens.weight"
LAYER_TENSORS = (
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    *(f"{linear}.weight" for linear in LINEARS),
)

CALIB_ATTENTION = "swallow_trt_calibration_sdpa"


def calibration_tensors(arch: LlamaArchitecture) -> set[str]:
    """The source tensors calibration reads: the embedding and every decoder layer's."""
    return {EMBEDDING} | {
        f"model.layers.{i}.{t}" for i in range(arch.num_hidden_layers) for t in LAYER_TENSORS
    }


# ---------------------------------------------------------------- one decoder layer


def _register_recording_attention() -> None:
    """SDPA that also records max |K| (after RoPE) and max |V| on the attention module: the KV cache."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(module, query, key, value, attention_mask, **kwargs):
        recorder = getattr(module, "kv_amax_recorder", None)
        if recorder is not None:
            recorder["k"] = max(recorder["k"], key.detach().abs().amax().item())
            recorder["v"] = max(recorder["v"], value.detach().abs().amax().item())
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(CALIB_ATTENTION, attention)


def load_decoder_layer(
    checkpoint: SourceCheckpoint, config, index: int, device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """One LlamaDecoderLayer holding only layer `index`'s weights (built on meta: no random init), read
    through convert's own reader: the same files, the same checks."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    with torch.device("meta"):
        layer = LlamaDecoderLayer(config, layer_idx=index)
    state = {name: checkpoint.get(f"model.layers.{index}.{name}", dtype).to(device) for name in LAYER_TENSORS}
    layer.load_state_dict(state, strict=True, assign=True)
    return layer.eval()


@dataclass
class _LinearObserver:
    """Forward-pre-hook state for one linear: amax, sum |x| per channel, and a token sample for AWQ."""

    amax: float = 0.0
    abs_sum: torch.Tensor | None = None
    count: int = 0
    samples: list[torch.Tensor] = field(default_factory=list)


def _observe(observer: _LinearObserver, keep_rows: torch.Tensor | None, awq: bool):
    def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1])
        observer.amax = max(observer.amax, x.abs().amax().item())
        if awq and keep_rows is not None:
            total = x.abs().float().sum(dim=0)
            observer.abs_sum = total if observer.abs_sum is None else observer.abs_sum + total
            observer.count += x.shape[0]
            observer.samples.append(x[keep_rows[keep_rows < x.shape[0]]].float().clone())

    return hook


# ---------------------------------------------------------------- the calibration loop


def _check_tokens(calib_tokens: torch.Tensor, arch: LlamaArchitecture) -> torch.Tensor:
    if calib_tokens.dim() != 2 or calib_tokens.numel() == 0:
        raise SwallowTrtError(
            f"calibration tokens must be a non-empty [samples, seq_len] tensor, got {tuple(calib_tokens.shape)}."
        )
    if calib_tokens.shape[1] > arch.max_position_embeddings:
        raise SwallowTrtError(
            f"calibration sequence length {calib_tokens.shape[1]} exceeds the model's context "
            f"(max_position_embeddings {arch.max_position_embeddings});",
            "use a smaller --calib-seq-len.",
        )
    if int(calib_tokens.max()) >= arch.vocab_size or int(calib_tokens.min()) < 0:
        raise SwallowTrtError(f"calibration token ids must lie in [0, {arch.vocab_size}).")
    return calib_tokens.long()


def _batches(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(total, start + size))


def _layer_figures(
    layer: torch.nn.Module,
    index: int,
    observers: dict[str, _LinearObserver],
    kv: dict[str, float],
    awq_group_size: int | None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What one calibrated layer contributes: its amaxes (and AWQ pre-quant scales) and their statistics."""
    prefix = f"model.layers.{index}"
    tensors: dict[str, torch.Tensor] = {}
    layer_stats: dict[str, Any] = {}
    for linear in LINEARS:
        weight = layer.get_submodule(linear).weight
        tensors[f"{prefix}.{linear}.input_amax"] = torch.tensor(observers[linear].amax, dtype=torch.float32)
        tensors[f"{prefix}.{linear}.weight_amax"] = weight.detach().abs().amax().float().cpu()
    tensors[f"{prefix}.self_attn.k_amax"] = torch.tensor(kv["k"], dtype=torch.float32)
    tensors[f"{prefix}.self_attn.v_amax"] = torch.tensor(kv["v"], dtype=torch.float32)
    for group, members in FUSED_GROUPS.items():
        amaxes = torch.stack([tensors[f"{prefix}.{m}.input_amax"] for m in members])
        group_stats: dict[str, float] = {"input_amax": amaxes.max().item()}
        if awq_group_size is not None:
            first = observers[members[0]]  # every member saw the same input
            inputs = torch.cat(first.samples)
            with torch.inference_mode():
                pre_quant, awq_stats = awq_search(
                    inputs,
                    first.abs_sum / first.count,
                    [layer.get_submodule(m).weight for m in members],
                    awq_group_size,
                )
            group_stats.update(awq_stats)
            for member in members:
                tensors[f"{prefix}.{member}.pre_quant_scale"] = pre_quant.float().cpu().clone()
        layer_stats[group] = group_stats
    input_amaxes = torch.stack([tensors[f"{prefix}.{m}.input_amax"] for m in LINEARS])
    layer_stats["input_amax"] = {
        "min": input_amaxes.min().item(),
        "max": input_amaxes.max().item(),
        "mean": input_amaxes.mean().item(),
    }
    layer_stats["k_amax"], layer_stats["v_amax"] = kv["k"], kv["v"]
    return tensors, layer_stats


def calibrate(
    source: SourceCheckpoint,
    arch: LlamaArchitecture,
    scheme: str,
    calib_tokens: torch.Tensor,
    device: str | torch.device = "cpu",
    *,
    group_size: int = 128,
    batch_size: int = 4,
    awq_search_tokens: int = 2048,
    dtype: torch.dtype = torch.float32,
    show_progress: bool = True,
) -> CalibrationResult:
    """Calibrate the model of `source` (opened and checked by the caller, `open_source`) for `scheme` (a --quant
    value) on `calib_tokens` [samples, seq_len].

    Runs one decoder layer at a time on `device` ("cpu" or "cuda") in `dtype`; `awq_search_tokens`
    bounds the tokens kept per linear for the AWQ search (the mean |x| statistic uses every token).
    """
    if scheme not in CALIBRATED:
        raise SwallowTrtError(
            f"unknown quantization scheme {scheme!r};", f"Choose one of {', '.join(CALIBRATED)}."
        )
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SwallowTrtError("--device cuda asked for, but torch sees no CUDA device;", "use --device cpu.")
    awq = "awq" in CALIBRATED[scheme].calibration
    if awq:
        check_awq_group(arch, 1, group_size)
    tokens = _check_tokens(calib_tokens, arch)
    samples, seq_len = tokens.shape
    config = transformers_config(arch)
    config._attn_implementation = CALIB_ATTENTION
    _register_recording_attention()
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    rotary = LlamaRotaryEmbedding(config).to(device)
    embedding = source.get(EMBEDDING)
    hidden = embedding[tokens].to(dtype)  # [samples, seq_len, hidden], kept on the host between layers
    del embedding

    # AWQ keeps an evenly spaced sample of token rows from every batch, up to awq_search_tokens in all.
    per_batch_rows = max(1, awq_search_tokens // max(1, -(-samples // batch_size)))
    batch_rows = batch_size * seq_len
    keep_rows = torch.linspace(0, batch_rows - 1, min(per_batch_rows, batch_rows)).round().long().unique()
    keep_rows = keep_rows.to(device)

    tensors: dict[str, torch.Tensor] = {}
    stats: dict[str, dict[str, Any]] = {}
    seconds: list[float] = []
    bar = tqdm(
        range(arch.num_hidden_layers), desc=f"calibrate {scheme}", unit="layer", disable=not show_progress
    )
    for index in bar:
        start = time.perf_counter()
        layer = load_decoder_layer(source, config, index, device, dtype)
        observers = {linear: _LinearObserver() for linear in LINEARS}
        # AWQ statistics only on each fused group's first linear: its siblings see the same input
        leaders = {members[0] for members in FUSED_GROUPS.values()}
        handles = [
            layer.get_submodule(linear).register_forward_pre_hook(
                _observe(observers[linear], keep_rows if awq else None, awq and linear in leaders)
            )
            for linear in LINEARS
        ]
        kv = {"k": 0.0, "v": 0.0}
        layer.self_attn.kv_amax_recorder = kv
        with torch.inference_mode():
            for batch in _batches(samples, batch_size):
                states = hidden[batch].to(device)
                positions = torch.arange(seq_len, device=device).unsqueeze(0).expand(states.shape[0], -1)
                cos_sin = rotary(states, positions)
                output = layer(states, position_ids=positions, position_embeddings=cos_sin)
                output = output[0] if isinstance(output, tuple) else output
                hidden[batch] = output.to("cpu", dtype)
        for handle in handles:
            handle.remove()

        layer_tensors, layer_stats = _layer_figures(layer, index, observers, kv, group_size if awq else None)
        tensors.update(layer_tensors)
        del layer, observers
        seconds.append(time.perf_counter() - start)
        layer_stats["seconds"] = round(seconds[-1], 3)
        stats[str(index)] = layer_stats
        bar.set_postfix(s_per_layer=f"{seconds[-1]:.1f}")
    bar.close()

    info = {
        "model_dir": str(source.model_dir),
        "algorithms": list(CALIBRATED[scheme].calibration),
        "calib_samples": samples,
        "calib_seq_len": seq_len,
        "calib_tokens_sha256": hashlib.sha256(tokens.numpy().tobytes()).hexdigest(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "group_size": group_size if awq else None,
        "awq_alphas": list(AWQ_ALPHAS) if awq else None,
        "awq_search_tokens": awq_search_tokens if awq else None,
        "seconds_per_layer": [round(s, 3) for s in seconds],
        "architecture": dataclasses.asdict(arch),
    }
    return CalibrationResult(scheme, arch.num_hidden_layers, tensors, info, stats)


def calibrate_model(
    model_dir: Path, scheme: str, calib_tokens: torch.Tensor, **options: Any
) -> CalibrationResult:
    """`calibrate` a model directory: its source opened and checked here (any layout convert accepts, pickle
    refused); `options` are calibrate's."""
    arch = read_hf_config(Path(model_dir))
    source = open_source(Path(model_dir), arch, calibration_tensors(arch))
    return calibrate(source, arch, scheme, calib_tokens, **options)
