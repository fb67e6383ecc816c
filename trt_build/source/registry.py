"""The known Llama-3.1-Swallow checkpoints: hub ids and architecture numbers.

Every Swallow release keeps the Llama 3.1 (or 3.3) architecture and tokenizer, so two shapes cover
them all. The 70B numbers are the standard Llama-3.1-70B values; `fetch` and `convert` read each
model's own config.json, which is what counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from trt_build.source.hf_config import LlamaArchitecture
from trt_build.source.tiny_model import LLAMA31_ROPE_SCALING

_COMMON = dict(
    vocab_size=128256,
    num_key_value_heads=8,
    head_dim=128,
    rope_theta=500000.0,
    rope_scaling=LLAMA31_ROPE_SCALING,
    max_position_embeddings=131072,
)

SHAPES: dict[str, LlamaArchitecture] = {
    "8B": LlamaArchitecture(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, **_COMMON
    ),
    "70B": LlamaArchitecture(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64, **_COMMON
    ),
}


@dataclass(frozen=True)
class SwallowModel:
    hub_id: str
    size: str  # key of SHAPES
    instruct: bool

    @property
    def architecture(self) -> LlamaArchitecture:
        return SHAPES[self.size]

    @property
    def short_name(self) -> str:
        return self.hub_id.split("/", 1)[1]


# (hub id, size, instruct)
_TABLE = [
    ("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5", "8B", True),
    ("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3", "8B", True),
    ("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.2", "8B", True),
    ("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.1", "8B", True),
    ("tokyotech-llm/Llama-3.1-Swallow-8B-v0.5", "8B", False),
    ("tokyotech-llm/Llama-3.1-Swallow-8B-v0.2", "8B", False),
    ("tokyotech-llm/Llama-3.1-Swallow-8B-v0.1", "8B", False),
    ("tokyotech-llm/Llama-3.3-Swallow-70B-Instruct-v0.4", "70B", True),
    ("tokyotech-llm/Llama-3.1-Swallow-70B-Instruct-v0.3", "70B", True),
    ("tokyotech-llm/Llama-3.1-Swallow-70B-Instruct-v0.1", "70B", True),
    ("tokyotech-llm/Llama-3.3-Swallow-70B-v0.4", "70B", False),
    ("tokyotech-llm/Llama-3.1-Swallow-70B-v0.1", "70B", False),
]
MODELS: dict[str, SwallowModel] = {
    hub_id: SwallowModel(hub_id, size, instruct) for hub_id, size, instruct in _TABLE
}
DEFAULT_MODEL = "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5"


def lookup(name: str) -> SwallowModel | None:
    """A known model by hub id or by its name without the organisation (case-insensitive)."""
    wanted = name.lower()
    return next((m for m in MODELS.values() if wanted in (m.hub_id.lower(), m.short_name.lower())), None)


def parameter_count(arch: LlamaArchitecture) -> int:
    d, i = arch.hidden_size, arch.intermediate_size
    per_layer = d * (arch.q_size + 2 * arch.kv_size) + arch.q_size * d + 3 * d * i + 2 * d
    embeddings = arch.vocab_size * d * (1 if arch.tie_word_embeddings else 2)
    return arch.num_hidden_layers * per_layer + embeddings + d
