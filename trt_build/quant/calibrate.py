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
an amax, so ModelOpt would buy nothing there. What we follow from the paper and its implementations:
  s = mean|x|^alpha / mean|w_normalized|^(1-alpha), normalised by sqrt(max(s) * min(s)), grid of 20
  alphas in [0, 1), pick the alpha minimising the output MSE of the quantized (round-to-nearest,
  group int4) linears on the calibration inputs. No clipping search (ModelOpt's INT4_AWQ_CFG, awq_lite,
  does none either). Identity scaling (plain RTN) is also a candidate, so AWQ never loses to RTN on
  the calibration data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.errors import SwallowTrtError
from trt_build.parallel.rules import check_awq_group
from trt_build.quant.numerics import int4_group_fake_quant
from trt_build.quant.schemes import ENGINE, schemes_for
from trt_build.source.checkpoint import SourceCheckpoint
from trt_build.source.hf_config import (
    LLAMA_LINEARS,
    LlamaArchitecture,
    hf_config_dict,
    hf_tensor_shapes,
    read_hf_config,
)

LINEARS = LLAMA_LINEARS  # every one is quantizable
# Linears that read the same input: one shared FP8 scale (fused qkv, fc+gate) and one AWQ search each.
FUSED_GROUPS: dict[str, tuple[str, ...]] = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}
GROUP_OF = {linear: group for group, members in FUSED_GROUPS.items() for linear in members}
EMBEDDING = "model.embed_tokens.weight"
LAYER_TENSORS = (
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    *(f"{linear}.weight" for linear in LINEARS),
)

CALIBRATED = schemes_for(ENGINE)  # every scheme can be calibrated (for an FP8 KV cache at least)
AWQ_ALPHAS = tuple(i / 20 for i in range(20))
CALIB_ATTENTION = "swallow_trt_calibration_sdpa"


# ---------------------------------------------------------------- the result


@dataclass
class CalibrationResult:
    """What calibration found, independent of any output layout (TRT-LLM checkpoint or ModelOpt HF).

    `tensors` (float32, names follow the HF checkpoint):
      model.layers.{i}.{linear}.input_amax       []    max |input| of the linear
      model.layers.{i}.{linear}.weight_amax      []    max |W|
      model.layers.{i}.{linear}.pre_quant_scale  [in]  AWQ activation multiplier 1/s (int4_awq only);
                                                       identical for q/k/v and for gate/up
      model.layers.{i}.self_attn.k_amax          []    max |K| after RoPE, as cached (KV cache)
      model.layers.{i}.self_attn.v_amax          []    max |V|
    `stats[str(i)]`: per layer seconds and, per fused group, min/max/mean of input amax and (AWQ) the
    chosen alpha, the pre-quant scale range and the output MSE of round-to-nearest vs AWQ.
    """

    scheme: str
    num_layers: int
    tensors: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _get(self, layer: int, suffix: str) -> torch.Tensor:
        name = f"model.layers.{layer}.{suffix}"
        if name not in self.tensors:
            raise KeyError(f"{name} is not in this {self.scheme} calibration result")
        return self.tensors[name]

    def input_amax(self, layer: int, linear: str) -> torch.Tensor:
        return self._get(layer, f"{linear}.input_amax")

    def weight_amax(self, layer: int, linear: str) -> torch.Tensor:
        return self._get(layer, f"{linear}.weight_amax")

    def pre_quant_scale(self, layer: int, linear: str) -> torch.Tensor:
        return self._get(layer, f"{linear}.pre_quant_scale")

    def group_input_amax(self, layer: int, group: str) -> torch.Tensor:
        """Shared input amax of a fused group (`qkv`, `o`, `gate_up`, `down`): the max of its parts."""
        return torch.stack([self.input_amax(layer, linear) for linear in FUSED_GROUPS[group]]).amax()

    def group_weight_amax(self, layer: int, group: str) -> torch.Tensor:
        return torch.stack([self.weight_amax(layer, linear) for linear in FUSED_GROUPS[group]]).amax()

    def kv_amax(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._get(layer, "self_attn.k_amax"), self._get(layer, "self_attn.v_amax")

    def save(self, directory: Path) -> None:
        """calibration.safetensors + calibration.json into an existing directory."""
        directory = Path(directory)
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, directory / "calibration.safetensors")
        meta = {"scheme": self.scheme, "num_layers": self.num_layers, "info": self.info, "stats": self.stats}
        (directory / "calibration.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> CalibrationResult:
        directory = Path(directory)
        meta_path = directory / "calibration.json"
        if not meta_path.is_file():
            raise click.ClickException(f"{meta_path} not found: not a calibration directory")
        meta = json.loads(meta_path.read_text())
        tensors = load_file(directory / "calibration.safetensors")
        return cls(meta["scheme"], meta["num_layers"], tensors, meta["info"], meta["stats"])


# ---------------------------------------------------------------- one decoder layer


def transformers_config(arch: LlamaArchitecture):
    """A LlamaConfig in the form the installed transformers reads correctly (RoPE keys differ 4 vs 5)."""
    import transformers
    from transformers import LlamaConfig

    form = "v5" if int(transformers.__version__.split(".")[0]) >= 5 else "v4"
    config = LlamaConfig(**hf_config_dict(arch, form))
    config._attn_implementation = CALIB_ATTENTION
    return config


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


def awq_search(
    inputs: torch.Tensor,
    act_abs_mean: torch.Tensor,
    weights: list[torch.Tensor],
    group_size: int,
    alphas: tuple[float, ...] = AWQ_ALPHAS,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The AWQ scale search for linears sharing one input; returns (pre_quant_scale = 1/s, stats).

    inputs [T, in] (a sample of calibration tokens), act_abs_mean [in] (mean |x| over all tokens),
    weights: the group's [out_k, in] weights, searched jointly (their outputs concatenated).
    """
    weight = torch.cat([w.float() for w in weights], dim=0)
    x = inputs.float()
    reference = x @ weight.T
    # mean over output rows of |W| normalised by its group amax (AutoAWQ's / ModelOpt's weight statistic)
    grouped = weight.abs().reshape(weight.shape[0], -1, group_size)
    w_mean = (grouped / grouped.amax(dim=-1, keepdim=True).clamp_min(1e-12)).reshape(weight.shape).mean(0)
    x_mean = act_abs_mean.float()

    def loss_of(s: torch.Tensor) -> float:
        quantized = int4_group_fake_quant(weight * s, group_size) / s
        return (x @ quantized.T - reference).pow(2).mean().item()

    ones = torch.ones_like(x_mean)
    best_s, best_alpha, rtn_loss = ones, -1.0, loss_of(ones)
    best_loss = rtn_loss
    for alpha in alphas:
        s = (x_mean.pow(alpha) / w_mean.pow(1 - alpha).clamp_min(1e-4)).clamp_min(1e-4)
        s = s / (s.max() * s.min()).sqrt()
        loss = loss_of(s)
        if loss < best_loss:
            best_s, best_alpha, best_loss = s, alpha, loss
    pre_quant = 1.0 / best_s
    stats = {
        "alpha": best_alpha,  # -1: identity (plain round-to-nearest) was best
        "mse_rtn": rtn_loss,
        "mse_awq": best_loss,
        "pre_quant_min": pre_quant.min().item(),
        "pre_quant_max": pre_quant.max().item(),
        "pre_quant_mean": pre_quant.mean().item(),
    }
    return pre_quant, stats


# ---------------------------------------------------------------- the calibration loop


def _check_tokens(calib_tokens: torch.Tensor, arch: LlamaArchitecture) -> torch.Tensor:
    if calib_tokens.dim() != 2 or calib_tokens.numel() == 0:
        raise click.ClickException(
            f"calibration tokens must be a non-empty [samples, seq_len] tensor, got {tuple(calib_tokens.shape)}"
        )
    if calib_tokens.shape[1] > arch.max_position_embeddings:
        raise click.ClickException(
            f"calibration sequence length {calib_tokens.shape[1]} exceeds the model's context "
            f"(max_position_embeddings {arch.max_position_embeddings}); use a smaller --calib-seq-len."
        )
    if int(calib_tokens.max()) >= arch.vocab_size or int(calib_tokens.min()) < 0:
        raise click.ClickException(f"calibration token ids must lie in [0, {arch.vocab_size})")
    return calib_tokens.long()


def _batches(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(total, start + size))


def calibrate(
    model_dir: Path,
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
    """Calibrate `model_dir` for `scheme` (a --quant value) on `calib_tokens` [samples, seq_len].

    Runs one decoder layer at a time on `device` ("cpu" or "cuda") in `dtype`; `awq_search_tokens`
    bounds the tokens kept per linear for the AWQ search (the mean |x| statistic uses every token).
    """
    if scheme not in CALIBRATED:
        raise SwallowTrtError(
            f"unknown quantization scheme {scheme!r};", f"Choose one of {', '.join(CALIBRATED)}."
        )
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    awq = "awq" in CALIBRATED[scheme].calibration
    arch = read_hf_config(Path(model_dir))
    if awq:
        check_awq_group(arch, 1, group_size)
    tokens = _check_tokens(calib_tokens, arch)
    samples, seq_len = tokens.shape
    checkpoint = SourceCheckpoint(Path(model_dir))  # any layout convert accepts; pickle refused
    needed = {EMBEDDING} | {
        f"model.layers.{i}.{t}" for i in range(arch.num_hidden_layers) for t in LAYER_TENSORS
    }
    checkpoint.validate(needed, hf_tensor_shapes(arch))
    config = transformers_config(arch)
    _register_recording_attention()
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    rotary = LlamaRotaryEmbedding(config).to(device)
    embedding = checkpoint.get(EMBEDDING)
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
        layer = load_decoder_layer(checkpoint, config, index, device, dtype)
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

        prefix = f"model.layers.{index}"
        layer_stats: dict[str, Any] = {}
        for linear in LINEARS:
            weight = layer.get_submodule(linear).weight
            tensors[f"{prefix}.{linear}.input_amax"] = torch.tensor(
                observers[linear].amax, dtype=torch.float32
            )
            tensors[f"{prefix}.{linear}.weight_amax"] = weight.detach().abs().amax().float().cpu()
        tensors[f"{prefix}.self_attn.k_amax"] = torch.tensor(kv["k"], dtype=torch.float32)
        tensors[f"{prefix}.self_attn.v_amax"] = torch.tensor(kv["v"], dtype=torch.float32)
        for group, members in FUSED_GROUPS.items():
            amaxes = torch.stack([tensors[f"{prefix}.{m}.input_amax"] for m in members])
            group_stats: dict[str, float] = {"input_amax": amaxes.max().item()}
            if awq:
                first = observers[members[0]]  # every member saw the same input
                inputs = torch.cat(first.samples)
                with torch.inference_mode():
                    pre_quant, awq_stats = awq_search(
                        inputs,
                        first.abs_sum / first.count,
                        [layer.get_submodule(m).weight for m in members],
                        group_size,
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
        del layer, observers
        seconds.append(time.perf_counter() - start)
        layer_stats["seconds"] = round(seconds[-1], 3)
        stats[str(index)] = layer_stats
        bar.set_postfix(s_per_layer=f"{seconds[-1]:.1f}")
    bar.close()

    info = {
        "model_dir": str(model_dir),
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


def write_calibration(result: CalibrationResult, output: Path, overwrite: bool, **manifest: Any) -> Path:
    """Save a result as its own pipeline directory (atomic, with manifest.json)."""
    from trt_build.common.manifest import write_manifest
    from trt_build.common.outdir import atomic_output_dir

    with atomic_output_dir(Path(output), overwrite=overwrite) as tmp:
        result.save(tmp)
        write_manifest(tmp, "calibrate", scheme=result.scheme, **manifest)
    return Path(output)


CALIBRATION_OPTIONS = (
    click.option(
        "--group-size",
        type=click.IntRange(min=1),
        default=128,
        show_default=True,
        help="int4_awq: input channels per scale; must divide every rank's input dimension.",
    ),
    click.option(
        "--calib-data",
        default="builtin",
        show_default=True,
        help="Calibration text: builtin (Japanese-first set), FILE.jsonl (text or chat messages) or FILE.txt.",
    ),
    click.option(
        "--calib-size", type=click.IntRange(min=1), default=128, show_default=True, help="Calibration rows."
    ),
    click.option(
        "--calib-seq-len", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per row."
    ),
    click.option(
        "--device",
        type=click.Choice(["cpu", "cuda"]),
        default="cpu",
        show_default=True,
        help="Where calibration runs (one decoder layer at a time).",
    ),
)


def calibration_options(command):
    """The calibration options shared by `calibrate` and `convert`."""
    for option in reversed(CALIBRATION_OPTIONS):
        command = option(command)
    return command


@click.command(cls=SwallowTrtCommand)
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path, file_okay=False), help="HF model directory."
)
@click.option("--quant", type=click.Choice(sorted(CALIBRATED)), default="fp8", show_default=True)
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="Calibration directory to write."
)
@calibration_options
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
def command(
    model_dir: Path,
    quant: str,
    output: Path,
    calib_data: str,
    calib_size: int,
    calib_seq_len: int,
    group_size: int,
    device: str,
    overwrite: bool,
) -> None:
    """Calibrate a HF model layer by layer (FP8 / KV amax, AWQ scales); write the result once, for any format."""
    from trt_build.quant.calib_data import calibration_tokens

    arch = read_hf_config(model_dir)
    batch = calibration_tokens(
        calib_data, calib_size, calib_seq_len, max_position_embeddings=arch.max_position_embeddings
    )
    start = time.perf_counter()
    result = calibrate(model_dir, quant, batch.tokens, device, group_size=group_size)
    write_calibration(
        result, output, overwrite, calibration_data=batch.describe(), seconds=time.perf_counter() - start
    )
    click.echo(f"wrote {output}: {len(result.tensors)} tensors over {result.num_layers} layers ({quant})")
