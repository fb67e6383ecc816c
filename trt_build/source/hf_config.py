"""Hugging Face `config.json` for Llama-architecture models, in both transformers forms.

transformers 4 writes `rope_theta` + `rope_scaling` + `torch_dtype`; transformers 5 writes
`rope_parameters` (holding rope_theta) + `dtype`. Each version silently misreads the other's form,
so we read either, and write both when we create models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
DTYPES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class LlamaArchitecture:
    """The numbers that decide every tensor shape of a Llama-3.1-architecture model."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 131072
    tie_word_embeddings: bool = False
    dtype: str = "bfloat16"
    bos_token_id: int = 128000
    eos_token_id: int | list[int] = field(default_factory=lambda: [128001, 128008, 128009])
    architecture: str = "LlamaForCausalLM"

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim


def rope_from(
    raw: dict[str, Any], theta_key: str = "rope_theta", scaling_key: str = "rope_scaling"
) -> tuple[float, dict[str, Any] | None]:
    """(rope theta, rope scaling without the theta) from any config that carries RoPE: the transformers-4
    form (`rope_theta` + `rope_scaling`), the transformers-5 form (`rope_parameters` holding both), or a
    TRT-LLM checkpoint (`rotary_base` + `rotary_scaling`, passed as the keys). The scaling type may be
    spelled `type` or `rope_type`; a `default` (or `none`) type means no scaling."""
    parameters = raw.get("rope_parameters")
    if isinstance(parameters, dict):  # transformers 5
        theta = float(parameters.get("rope_theta", raw.get(theta_key, 10000.0)))
        scaling = {k: v for k, v in parameters.items() if k != "rope_theta"}
    else:
        theta = float(raw.get(theta_key, 10000.0))
        scaling = dict(raw.get(scaling_key) or {})
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    if scaling.get("rope_type", "default") in ("default", "none"):
        return theta, None
    return theta, scaling


def parse_hf_config(raw: dict[str, Any], source: str = "config.json") -> LlamaArchitecture:
    """Validate a Llama config dict (either form) and return its architecture numbers."""
    architectures = raw.get("architectures") or []
    if not any(name in SUPPORTED_ARCHITECTURES for name in architectures):
        raise click.ClickException(
            f"{source}: architecture {architectures or 'missing'} is not supported. swallow-trt converts "
            f"Llama-3.1-architecture checkpoints ({', '.join(SUPPORTED_ARCHITECTURES)}) such as Llama-3.1-Swallow."
        )
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [key for key in required if key not in raw]
    if missing:
        raise click.ClickException(
            f"{source}: missing {', '.join(missing)}; is this a complete HF config.json?"
        )
    heads = int(raw["num_attention_heads"])
    theta, scaling = rope_from(raw)
    dtype = raw.get("torch_dtype") or raw.get("dtype") or "bfloat16"
    return LlamaArchitecture(
        vocab_size=int(raw["vocab_size"]),
        hidden_size=int(raw["hidden_size"]),
        intermediate_size=int(raw["intermediate_size"]),
        num_hidden_layers=int(raw["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // heads),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=int(raw.get("max_position_embeddings", 131072)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        dtype=str(dtype),
        bos_token_id=raw.get("bos_token_id", 128000),
        eos_token_id=raw.get("eos_token_id", 128009),
        architecture=next(name for name in architectures if name in SUPPORTED_ARCHITECTURES),
    )


def read_hf_config(model_dir: Path) -> LlamaArchitecture:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise click.ClickException(f"{path} not found: --model-dir must be a Hugging Face model directory.")
    return parse_hf_config(json.loads(path.read_text()), source=str(path))


def hf_config_dict(arch: LlamaArchitecture, form: str = "both") -> dict[str, Any]:
    """config.json as the real Swallow repos have it; form: 'v4', 'v5' or 'both' (readable by either)."""
    config: dict[str, Any] = {
        "architectures": [arch.architecture],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": arch.bos_token_id,
        "eos_token_id": arch.eos_token_id,
        "head_dim": arch.head_dim,
        "hidden_act": "silu",
        "hidden_size": arch.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": arch.intermediate_size,
        "max_position_embeddings": arch.max_position_embeddings,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": arch.num_attention_heads,
        "num_hidden_layers": arch.num_hidden_layers,
        "num_key_value_heads": arch.num_key_value_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": arch.rms_norm_eps,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "use_cache": True,
        "vocab_size": arch.vocab_size,
    }
    if form in ("v4", "both"):
        config.update(rope_theta=arch.rope_theta, rope_scaling=arch.rope_scaling, torch_dtype=arch.dtype)
        config["transformers_version"] = "4.45.1"
    if form in ("v5", "both"):
        parameters = dict(arch.rope_scaling or {"rope_type": "default"})
        config.update(rope_parameters={**parameters, "rope_theta": arch.rope_theta}, dtype=arch.dtype)
        if form == "v5":
            config.update(rope_scaling=None, transformers_version="5.0.0")
    if form not in ("v4", "v5", "both"):
        raise ValueError(f"unknown config form {form!r}")
    return dict(sorted(config.items()))


# Every linear of a Llama decoder layer, by its HF name inside the layer, in file order.
LLAMA_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def hf_tensor_shapes(arch: LlamaArchitecture) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Hugging Face LlamaForCausalLM checkpoint and its shape, in file order."""
    d, i = arch.hidden_size, arch.intermediate_size
    per_layer = {
        "input_layernorm.weight": (d,),
        "self_attn.q_proj.weight": (arch.q_size, d),
        "self_attn.k_proj.weight": (arch.kv_size, d),
        "self_attn.v_proj.weight": (arch.kv_size, d),
        "self_attn.o_proj.weight": (d, arch.q_size),
        "post_attention_layernorm.weight": (d,),
        "mlp.gate_proj.weight": (i, d),
        "mlp.up_proj.weight": (i, d),
        "mlp.down_proj.weight": (d, i),
    }
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (arch.vocab_size, d)}
    for layer in range(arch.num_hidden_layers):
        shapes.update({f"model.layers.{layer}.{name}": shape for name, shape in per_layer.items()})
    shapes["model.norm.weight"] = (d,)
    if not arch.tie_word_embeddings:
        shapes["lm_head.weight"] = (arch.vocab_size, d)
    return shapes
