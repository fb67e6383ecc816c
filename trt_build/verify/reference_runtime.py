"""Reference runtime: any checkpoint `swallow-trt convert` writes, loaded back into a transformers model.

It is the proof of the converter (logits are compared with the source model) and the CPU engine behind the
Triton repository on machines without a GPU. The checkpoint is read back as a dense HF state dict by its
format's reader (`trtllm_reader` for TensorRT-LLM checkpoints, `modelopt_reader` for ModelOpt unified ones),
and FP8 activation and KV cache scales become fake-quant hooks (`fake_quant`), so the model computes what the
engine will.

Importing this module has no side effects (no click, no I/O); `load_checkpoint` and `load_unified_checkpoint`
are the public API.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trt_build.formats.trtllm_config import read_trtllm_checkpoint
from trt_build.source.checkpoint import dtype_name
from trt_build.source.hf_config import LlamaArchitecture, transformers_config
from trt_build.verify.fake_quant import install_fake_quant
from trt_build.verify.modelopt_reader import unified_state_dict
from trt_build.verify.trtllm_reader import checkpoint_fake_quant, checkpoint_state_dict


def checkpoint_llama_config(checkpoint_dir: Path):
    """LlamaConfig rebuilt from a TensorRT-LLM checkpoint's config.json."""
    return transformers_config(read_trtllm_checkpoint(checkpoint_dir, check_ranks=False).arch)


def build_model(arch: LlamaArchitecture, state_dict: dict[str, torch.Tensor], device: str = "cpu"):
    """A LlamaForCausalLM holding exactly `state_dict`, built without random initialisation.

    A checkpoint's lm_head is loaded as its own tensor even when the model ties embeddings, so the
    tensor the checkpoint holds is the one that is checked; a state dict without lm_head gets it tied.
    """
    from transformers import LlamaForCausalLM

    config = transformers_config(arch, dtype=dtype_name(next(iter(state_dict.values())).dtype))
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tie = arch.tie_word_embeddings and "lm_head.weight" not in state_dict
    model.load_state_dict(state_dict, strict=not tie, assign=True)
    if tie:
        model.lm_head.weight = model.model.embed_tokens.weight
    # RoPE tables are buffers computed from config, not weights: rebuild them off the meta device.
    with torch.device("cpu"):
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    return model.to(device).eval()


def load_checkpoint(checkpoint_dir: Path | str, device: str = "cpu", dtype: torch.dtype | None = None):
    """A transformers LlamaForCausalLM (eval mode) holding the weights of a TensorRT-LLM checkpoint.

    dtype: compute dtype; default the checkpoint's `dtype`. Quantized weights are dequantized; FP8
    activations and an FP8 KV cache are fake-quantized with the checkpoint's static scales, so the model
    computes what the engine will.
    """
    arch, state = checkpoint_state_dict(Path(checkpoint_dir), dtype)
    return install_fake_quant(build_model(arch, state, device), checkpoint_fake_quant(Path(checkpoint_dir)))


def load_unified_checkpoint(directory: Path | str, device: str = "cpu", dtype: torch.dtype | None = None):
    """A transformers LlamaForCausalLM (eval mode) holding a ModelOpt unified HF checkpoint, dequantized,
    with FP8 activations fake-quantized by their static `input_scale` and an FP8 KV cache at the scale the
    PyTorch backend uses (1.0): the model computes what TensorRT-LLM's PyTorch backend will.

    dtype: compute dtype; default the checkpoint's config dtype.
    """
    arch, state, fake_quant = unified_state_dict(Path(directory), dtype)
    return install_fake_quant(build_model(arch, state, device), fake_quant)
