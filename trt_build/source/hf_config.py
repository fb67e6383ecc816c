"""Hugging Face `config.json` for Llama-architecture models, in both transformers forms.

transformers 4 writes `rope_theta` + `rope_scaling` + `torch_dtype`; transformers 5 writes
`rope_parameters` (holding rope_theta) + `dtype`. Each version silently misreads the other's form,
so we read either, and write both when we create models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import read_json_object

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
DTYPES = ("bfloat16", "float16", "float32")
T = TypeVar("T")


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


# The bounds of every shape number a config.json may state, checked before any tensor is read or allocated:
# generous (Llama 3.1 405B has 126 layers, hidden 16384, 128 heads, 53248 MLP channels) but finite, so a
# damaged or hostile config cannot ask for an absurd tensor or loop. One table for HF and TRT-LLM configs.
SHAPE_LIMITS: dict[str, int] = {
    "num_hidden_layers": 1024,
    "hidden_size": 65536,
    "intermediate_size": 1 << 20,
    "num_attention_heads": 1024,
    "num_key_value_heads": 1024,
    "head_dim": 4096,
    "vocab_size": 1 << 20,
    "max_position_embeddings": 1 << 24,
}
REQUIRED_SHAPE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
)
DEFAULT_MAX_POSITION_EMBEDDINGS = 131072


def is_trtllm_config(config: dict[str, Any]) -> bool:
    """A TRT-LLM checkpoint config names its `architecture`; a Hugging Face one lists `architectures`."""
    return "architecture" in config and "architectures" not in config


def _shape_int(raw: dict[str, Any], key: str, source: str, field: str | None = None) -> int:
    """raw[key], a whole number within SHAPE_LIMITS[field or key] (a string or 4096.0 is refused, not guessed)."""
    value, limit = raw[key], SHAPE_LIMITS[field or key]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise SwallowTrtError(
            f"{source}: {key} is {value!r}; a Llama-architecture model needs a whole number from 1 to {limit}.",
            "Is config.json intact and from this model? Download it again.",
        )
    return value


def shape_numbers(raw: dict[str, Any], source: str, head_dim_key: str = "head_dim") -> dict[str, int]:
    """The shape numbers of a Llama config (HF, or a TRT-LLM checkpoint's with `head_size`), each checked
    against SHAPE_LIMITS and against each other, as `LlamaArchitecture` fields."""
    missing = [key for key in REQUIRED_SHAPE_KEYS if key not in raw]
    if missing:
        raise SwallowTrtError(f"{source}: missing {', '.join(missing)}; is this a complete config.json?")
    numbers = {key: _shape_int(raw, key, source) for key in REQUIRED_SHAPE_KEYS}
    heads, hidden = numbers["num_attention_heads"], numbers["hidden_size"]
    given = {key: raw.get(key) is not None for key in ("num_key_value_heads", head_dim_key)}
    kv_heads = _shape_int(raw, "num_key_value_heads", source) if given["num_key_value_heads"] else heads
    if given[head_dim_key]:
        head_dim = _shape_int(raw, head_dim_key, source, "head_dim")
    elif hidden % heads:
        raise SwallowTrtError(
            f"{source}: hidden_size {hidden} is not divisible by num_attention_heads {heads} "
            f"(and no {head_dim_key} is given); no Llama model has this shape.",
            "Is config.json intact and from this model?",
        )
    else:
        head_dim = hidden // heads
    if heads % kv_heads or head_dim % 2:
        raise SwallowTrtError(
            f"{source}: num_attention_heads {heads} must be a multiple of num_key_value_heads {kv_heads}, and "
            f"the head size {head_dim} even (RoPE rotates pairs); no Llama model has this shape.",
            "Is config.json intact and from this model?",
        )
    positions = raw.get("max_position_embeddings")
    numbers["max_position_embeddings"] = (
        DEFAULT_MAX_POSITION_EMBEDDINGS
        if positions is None
        else _shape_int(raw, "max_position_embeddings", source)
    )
    return {**numbers, "num_key_value_heads": kv_heads, "head_dim": head_dim}


def _read(source: str, what: str, read: Callable[[], T]) -> T:
    """`read()`, naming config.json and `what` when a value in it is not a number."""
    try:
        return read()
    except (TypeError, ValueError, AttributeError) as error:
        raise SwallowTrtError(
            f"{source}: {what} holds a value that is not a number ({error}).",
            "Is config.json intact and from this model?",
        ) from None


def parse_hf_config(raw: Any, source: str = "config.json") -> LlamaArchitecture:
    """Validate a Llama config dict (either form) and return its architecture numbers."""
    if not isinstance(raw, dict):
        raise SwallowTrtError(
            f"{source} holds a {type(raw).__name__}, not a JSON object; is it a config.json?"
        )
    if is_trtllm_config(raw):
        raise SwallowTrtError(
            f"{source} names an 'architecture' ({raw['architecture']!r}), not 'architectures': this is already a "
            "TensorRT-LLM checkpoint.",
            "Give the Hugging Face model directory it was converted from (config.json + *.safetensors); "
            "`swallow-trt build` takes the checkpoint itself.",
        )
    architectures = raw.get("architectures") or []
    if not isinstance(architectures, list) or not any(
        name in SUPPORTED_ARCHITECTURES for name in architectures
    ):
        raise SwallowTrtError(
            f"{source}: architecture {architectures or 'missing'} is not supported. swallow-trt converts "
            f"Llama-3.1-architecture checkpoints ({', '.join(SUPPORTED_ARCHITECTURES)}) such as Llama-3.1-Swallow."
        )
    numbers = shape_numbers(raw, source)
    epsilon = _read(source, "rms_norm_eps", lambda: float(raw.get("rms_norm_eps", 1e-5)))
    theta, scaling = _read(
        source, "the RoPE settings (rope_theta, rope_scaling, rope_parameters)", lambda: rope_from(raw)
    )
    dtype = raw.get("torch_dtype") or raw.get("dtype") or "bfloat16"
    return LlamaArchitecture(
        **numbers,
        rms_norm_eps=epsilon,
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        dtype=str(dtype),
        bos_token_id=raw.get("bos_token_id", 128000),
        eos_token_id=raw.get("eos_token_id", 128009),
        architecture=next(name for name in architectures if name in SUPPORTED_ARCHITECTURES),
    )


def read_hf_config(model_dir: Path) -> LlamaArchitecture:
    """A model directory's config.json, checked (`parse_hf_config`) before anything else is read."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise SwallowTrtError(f"{path} not found: --model-dir must be a Hugging Face model directory.")
    return parse_hf_config(read_json_object(path), source=str(path))


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


def transformers_config(arch: LlamaArchitecture, dtype: str | None = None):
    """A transformers `LlamaConfig` of `arch` (in `dtype`, default its own), built from the config.json form the
    installed transformers reads correctly: the RoPE keys differ between 4 and 5 and each misreads the other's.
    Calibration and the reference runtime build their models from it."""
    import transformers
    from transformers import LlamaConfig

    form = "v5" if int(transformers.__version__.split(".")[0]) >= 5 else "v4"
    return LlamaConfig(**hf_config_dict(dataclasses.replace(arch, dtype=dtype or arch.dtype), form))


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
