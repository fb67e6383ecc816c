"""The TensorRT-LLM checkpoint `config.json`: the one writer and the one reader (docs/trtllm-checkpoint.md §1).

Convert writes it (`trtllm_config`); build, plan, verify, the reference runtime and the Triton repository
read it (`read_trtllm_checkpoint`), so what a checkpoint says about itself is parsed in one place. Kept free
of torch so the planner can read a checkpoint without the reference runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import read_json_object
from trt_build.source.hf_config import LlamaArchitecture, is_trtllm_config, rope_from, shape_numbers

# Keys TensorRT-LLM accepts in both 0.13 and recent versions; `Mapping(**d)` / `QuantConfig(**d)` raise
# TypeError on anything else (docs/trtllm-checkpoint.md §1.2, §1.3).
ALLOWED_MAPPING_KEYS = frozenset(
    {"world_size", "tp_size", "pp_size", "cp_size", "gpus_per_node", "moe_tp_size", "moe_ep_size"}
)
ALLOWED_QUANTIZATION_KEYS = frozenset(
    {
        "quant_algo",
        "kv_cache_quant_algo",
        "group_size",
        "smoothquant_val",
        "clamp_val",
        "has_zero_point",
        "pre_quant_scale",
        "exclude_modules",
    }
)
LLAMA_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
GPUS_PER_NODE = 8  # Mapping's default


class CheckpointError(SwallowTrtError):
    """The checkpoint directory is incomplete or not one this toolkit understands."""


def rank_file(rank: int) -> str:
    """The file that holds the tensors of one rank (GPU) of the checkpoint."""
    return f"rank{rank}.safetensors"


def trtllm_config(
    arch: LlamaArchitecture,
    dtype: str,
    tp: int,
    pp: int,
    quantization: dict[str, Any],
    use_parallel_embedding: bool = False,
) -> dict[str, Any]:
    """The checkpoint config.json (docs/trtllm-checkpoint.md §1.5), with only keys TensorRT-LLM accepts in mapping/quantization.

    quantization: the block to write (`QuantScheme.trtllm_block`).
    """
    mapping = {"world_size": tp * pp, "tp_size": tp, "pp_size": pp}
    unknown = (mapping.keys() - ALLOWED_MAPPING_KEYS) | (quantization.keys() - ALLOWED_QUANTIZATION_KEYS)
    if unknown:
        raise ValueError(f"keys TensorRT-LLM would reject in mapping/quantization: {sorted(unknown)}")
    return {
        "architecture": arch.architecture,
        "dtype": dtype,
        "logits_dtype": "float32",
        "vocab_size": arch.vocab_size,
        "max_position_embeddings": arch.max_position_embeddings,
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.num_hidden_layers,
        "num_attention_heads": arch.num_attention_heads,
        "num_key_value_heads": arch.num_key_value_heads,
        "head_size": arch.head_dim,
        "intermediate_size": arch.intermediate_size,
        "hidden_act": "silu",
        "norm_epsilon": arch.rms_norm_eps,
        "position_embedding_type": "rope_gpt_neox",
        "rotary_base": arch.rope_theta,
        "rotary_scaling": arch.rope_scaling,
        "mlp_bias": False,
        "attn_bias": False,
        "residual_mlp": False,
        "use_parallel_embedding": use_parallel_embedding,
        "embedding_sharding_dim": 0,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "mapping": mapping,
        "quantization": dict(quantization),
    }


# ---------------------------------------------------------------- reading


def read_config_json(path: Path) -> dict[str, Any]:
    """A JSON config file (config.json, hf_quant_config.json) as a dict, or a clear error naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found.")
    return read_json_object(path, CheckpointError)


@dataclass(frozen=True)
class TrtllmCheckpoint:
    """What a TensorRT-LLM checkpoint's config.json says about it."""

    directory: Path
    config: dict[str, Any]

    @property
    def quantization(self) -> dict[str, Any]:
        return self.config.get("quantization") or {}

    @property
    def quant_algo(self) -> str | None:
        return self.quantization.get("quant_algo")

    @property
    def kv_cache_quant_algo(self) -> str | None:
        return self.quantization.get("kv_cache_quant_algo")

    @property
    def mapping(self) -> dict[str, Any]:
        return self.config.get("mapping") or {}

    @property
    def tp(self) -> int:
        return int(self.mapping.get("tp_size", 1))

    @property
    def pp(self) -> int:
        return int(self.mapping.get("pp_size", 1))

    @property
    def world_size(self) -> int:
        return int(self.mapping.get("world_size", self.tp * self.pp))

    @property
    def gpus_per_node(self) -> int:
        return int(self.mapping.get("gpus_per_node", GPUS_PER_NODE))

    @property
    def arch(self) -> LlamaArchitecture:
        return architecture_from_checkpoint(self.config, str(self.directory / "config.json"))

    def rank_files(self) -> list[Path]:
        return [self.directory / rank_file(rank) for rank in range(self.world_size)]


def read_trtllm_checkpoint(directory: Path, check_ranks: bool = True) -> TrtllmCheckpoint:
    """A TRT-LLM checkpoint directory (`swallow-trt convert` output), checked: its config.json is one, its
    mapping is consistent and (check_ranks) every rank file is there."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: is {directory} a TensorRT-LLM checkpoint?",
            "Write one with `swallow-trt convert --model-dir HF_DIR --output CKPT`.",
        )
    config = read_config_json(path)
    if not is_trtllm_config(config):
        raise CheckpointError(
            f"{path} has no 'architecture': this looks like a Hugging Face directory, not a TRT-LLM checkpoint.",
            "Run `swallow-trt convert --model-dir DIR --output CKPT` first, or build for the PyTorch backend, "
            "which loads it directly: --target pytorch.",
        )
    checkpoint = TrtllmCheckpoint(directory, config)
    try:
        tp, pp, world = checkpoint.tp, checkpoint.pp, checkpoint.world_size
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{path}: mapping {checkpoint.mapping} holds a value that is not a number."
        ) from None
    if world != tp * pp:
        raise CheckpointError(f"{path}: mapping world_size {world} != tp_size {tp} x pp_size {pp}.")
    if check_ranks:
        missing = [p.name for p in checkpoint.rank_files() if not p.is_file()]
        if missing:
            raise CheckpointError(
                f"{directory} lacks {', '.join(missing)}.", "Convert again (the checkpoint is incomplete)."
            )
    return checkpoint


def architecture_from_checkpoint(config: dict[str, Any], source: str = "config.json") -> LlamaArchitecture:
    """The HF architecture numbers of a TensorRT-LLM checkpoint config.json."""
    if config.get("architecture") not in LLAMA_ARCHITECTURES:
        raise CheckpointError(
            f"{source}: architecture {config.get('architecture')!r} is not a Llama checkpoint."
        )
    try:
        numbers = shape_numbers(config, source, head_dim_key="head_size")  # the HF config's checks and bounds
        theta, scaling = rope_from(config, theta_key="rotary_base", scaling_key="rotary_scaling")
        epsilon = float(config.get("norm_epsilon", 1e-5))
    except SwallowTrtError as error:
        raise CheckpointError(error.problem, error.fix) from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{source}: norm_epsilon or the RoPE settings are not numbers ({error})."
        ) from None
    return LlamaArchitecture(
        **numbers,
        rms_norm_eps=epsilon,
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        dtype=str(config.get("dtype", "bfloat16")),
    )


def read_checkpoint_config(checkpoint_dir: Path) -> dict[str, Any]:
    """The raw config.json of a TRT-LLM checkpoint (rank files not checked)."""
    return read_trtllm_checkpoint(checkpoint_dir, check_ranks=False).config
