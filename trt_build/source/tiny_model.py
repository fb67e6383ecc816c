"""Swallow-architecture models with seeded random weights, for tests, demos and benchmarks.

The directory looks like a real tokyotech-llm repo: `config.json` in the form the real repos use
(plus the transformers-5 keys, so both versions read it right), `generation_config.json`,
safetensors shards with `model.safetensors.index.json` when large, and the Llama 3.1 tokenizer.
Tensors are generated and written one at a time, so even `70b-shape` needs one tensor of memory.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir
from trt_build.formats.safetensors_stream import (
    StreamingSafetensorsWriter,
    TensorSpec,
    shard_layout,
    tensor_bytes,
)
from trt_build.source.hf_config import LlamaArchitecture, hf_config_dict, hf_tensor_shapes
from trt_build.source.tokenizer import copy_tokenizer

LLAMA31_ROPE_SCALING = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}

_COMMON = dict(vocab_size=128256, rope_theta=500000.0, rope_scaling=LLAMA31_ROPE_SCALING)

# preset name -> architecture (its num_hidden_layers is the default --layers)
PRESETS: dict[str, LlamaArchitecture] = {
    # 8 query heads over 2 KV heads: TP 4 and 8 exercise KV-head duplication.
    "tiny": LlamaArchitecture(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        **_COMMON,
    ),
    "8b-shape": LlamaArchitecture(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=2,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        **_COMMON,
    ),
    "70b-shape": LlamaArchitecture(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=1,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
        **_COMMON,
    ),
}

GENERATION_CONFIG = {
    "bos_token_id": 128000,
    "do_sample": True,
    "eos_token_id": [128001, 128008, 128009],
    "temperature": 0.6,
    "top_p": 0.9,
}


def hf_tensor_layout(arch: LlamaArchitecture, dtype: torch.dtype) -> list[TensorSpec]:
    """Every tensor of a Hugging Face LlamaForCausalLM checkpoint, in file order, all in `dtype`."""
    return [(name, dtype, shape) for name, shape in hf_tensor_shapes(arch).items()]


def random_tensor(name: str, dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A tensor that depends only on (seed, name): norms near 1, everything else N(0, 0.02)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    out = torch.empty(shape, dtype=dtype)
    rows = out.view(-1, shape[-1])
    step = max(1, (16 << 20) // shape[-1])  # generate in ~64 MB float32 blocks
    for start in range(0, rows.shape[0], step):
        block = torch.randn(rows[start : start + step].shape, generator=generator) * 0.02
        if name.endswith("norm.weight"):
            block += 1.0
        rows[start : start + step] = block.to(dtype)
    return out


def write_tiny_model(
    output: Path,
    preset: str = "tiny",
    layers: int | None = None,
    seed: int = 0,
    config_form: str = "both",
    max_shard_bytes: int = 2 << 30,
    tie_word_embeddings: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a Swallow-shaped HF model directory with seeded random weights; returns `output`."""
    arch = dataclasses.replace(
        PRESETS[preset],
        num_hidden_layers=layers or PRESETS[preset].num_hidden_layers,
        tie_word_embeddings=tie_word_embeddings,
    )
    return write_hf_model(
        output,
        arch,
        lambda name, dtype, shape: random_tensor(name, dtype, shape, seed),
        manifest_fields=dict(preset=preset, seed=seed, config_form=config_form),
        config_form=config_form,
        max_shard_bytes=max_shard_bytes,
        overwrite=overwrite,
    )


TensorSource = Callable[[str, torch.dtype, tuple[int, ...]], torch.Tensor]


def write_hf_model(
    output: Path,
    arch: LlamaArchitecture,
    tensor: TensorSource,
    manifest_fields: dict[str, Any],
    config_form: str = "both",
    max_shard_bytes: int = 2 << 30,
    overwrite: bool = False,
) -> Path:
    """Write an HF model directory of `arch` whose tensors come from `tensor(name, dtype, shape)`, one
    at a time (so memory stays at one tensor); the manifest records `manifest_fields` first."""
    dtype = getattr(torch, arch.dtype)
    layout = hf_tensor_layout(arch, dtype)
    shards = shard_layout(layout, max_shard_bytes)
    total = sum(tensor_bytes(dt, shape) for _, dt, shape in layout)
    label = manifest_fields.get("preset", "model")
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        weight_map: dict[str, str] = {}
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"{label} weights", leave=False) as bar:
            for file_name, shard in shards:
                with StreamingSafetensorsWriter(tmp / file_name, shard, metadata={"format": "pt"}) as writer:
                    for name, dt, shape in shard:
                        writer.write(name, tensor(name, dt, shape))
                        weight_map[name] = file_name
                        bar.update(tensor_bytes(dt, shape))
        if len(shards) > 1:
            index_json = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(hf_config_dict(arch, config_form), indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
        copy_tokenizer(tmp)
        write_manifest(
            tmp,
            "tiny-model",
            **manifest_fields,
            num_parameters=sum(torch.Size(shape).numel() for _, _, shape in layout),
            weight_bytes=total,
        )
    return output
