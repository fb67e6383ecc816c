"""The CPU reference engine behind `tensorrt_llm` in a `--checkpoint` repository.

It stands in for the TensorRT-LLM executor where there is no GPU: the converted checkpoint is loaded
back into a transformers Llama by the reference runtime, and each request is generated token by
token with its own KV cache. Requests run concurrently (one thread each); a lock around the forward
pass interleaves their steps. Sampling follows the executor's request fields: greedy unless a
temperature > 0 or top_k > 1 or top_p < 1 asks for sampling, end id, stop and bad word lists in the
[2, L] layout, min_tokens, seed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch


def load_model(checkpoint_dir: Path | str) -> torch.nn.Module:
    """The one place the engine gets its weights, by the directory's kind (trt_build/common/targets.py):
    a TRT-LLM checkpoint through the reference runtime; an unquantized Hugging Face directory (the
    pytorch target's input) through transformers, safetensors only and no code from the directory;
    a quantized ModelOpt directory through the reference runtime's reader of that format."""
    from trt_build.formats.kinds import TRTLLM_CHECKPOINT, checkpoint_kind

    directory = Path(checkpoint_dir)
    kind = checkpoint_kind(directory)
    if kind.kind == TRTLLM_CHECKPOINT:
        from trt_build.verify.reference_runtime import load_checkpoint

        return load_checkpoint(directory, device="cpu", dtype=torch.float32)
    if kind.quant_algo is not None:
        from trt_build.verify.reference_runtime import load_unified_checkpoint

        return load_unified_checkpoint(directory, device="cpu", dtype=torch.float32)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
    )


class RequestError(ValueError):
    """A request the engine cannot serve; the message says why."""


def word_lists(packed) -> list[list[int]]:
    """[2, L] (ids; cumulative end offsets padded with -1) -> one id list per word."""
    if packed is None or len(packed) == 0 or len(packed[0]) == 0:
        return []
    ids, ends = list(packed[0]), [int(e) for e in packed[1] if e >= 0]
    return [[int(i) for i in ids[start:end]] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


@dataclass
class SamplingParams:
    max_tokens: int
    end_id: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    min_tokens: int = 0
    repetition_penalty: float | None = None
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        if self.temperature is not None and self.temperature <= 0:
            return True
        wants_sampling = (
            (self.temperature is not None and self.temperature > 0)
            or (self.top_k is not None and self.top_k > 1)
            or (self.top_p is not None and 0 < self.top_p < 1)
        )
        return not wants_sampling


class CpuEngine:
    def __init__(self, model: torch.nn.Module, max_input_len: int, max_seq_len: int):
        self.model = model.eval()
        self.max_input_len = max_input_len
        self.max_seq_len = max_seq_len
        self.vocab_size = model.config.vocab_size
        self.lock = threading.Lock()

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        if not prompt:
            raise RequestError("input_ids is empty: send at least one token.")
        if len(prompt) > self.max_input_len:
            raise RequestError(
                f"The prompt has {len(prompt)} tokens; this engine accepts at most {self.max_input_len}."
            )
        if params.max_tokens <= 0:
            raise RequestError(f"request_output_len must be at least 1 (got {params.max_tokens}).")
        if len(prompt) + params.max_tokens > self.max_seq_len:
            raise RequestError(
                f"prompt ({len(prompt)}) + request_output_len ({params.max_tokens}) exceeds "
                f"max_seq_len {self.max_seq_len}."
            )
        if any(not 0 <= token < self.vocab_size for token in prompt):
            raise RequestError(f"input_ids holds ids outside the vocabulary (0..{self.vocab_size - 1}).")

    def _next_token(
        self, logits: torch.Tensor, generated: list[int], params: SamplingParams, rng: torch.Generator
    ) -> int:
        logits = logits.float().clone()
        if params.repetition_penalty and params.repetition_penalty != 1.0 and generated:
            seen = torch.tensor(sorted(set(generated)))
            values = logits[seen]
            logits[seen] = torch.where(
                values > 0, values / params.repetition_penalty, values * params.repetition_penalty
            )
        for word in params.bad_words:
            if len(word) == 1 or generated[-(len(word) - 1) :] == word[:-1]:
                logits[word[-1]] = float("-inf")
        if params.end_id is not None and len(generated) < params.min_tokens:
            logits[params.end_id] = float("-inf")
        if params.greedy:
            return int(torch.argmax(logits))
        logits = logits / (params.temperature if params.temperature else 1.0)
        if params.top_k and params.top_k > 0:
            kth = torch.topk(logits, min(params.top_k, logits.numel())).values[-1]
            logits[logits < kth] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        if params.top_p is not None and 0 < params.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > params.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs / probs.sum(), 1, generator=rng))

    def generate(
        self, prompt: list[int], params: SamplingParams, cancelled: Callable[[], bool] = lambda: False
    ) -> Iterator[int]:
        """Yield generated token ids one by one; stops at end id (not yielded), a stop word, or max_tokens."""
        self.check(prompt, params)
        rng = torch.Generator()
        rng.manual_seed(params.seed if params.seed is not None else torch.seed())
        generated: list[int] = []
        cache = None
        step_input = torch.tensor([prompt])
        while len(generated) < params.max_tokens and not cancelled():
            with self.lock, torch.inference_mode():
                out = self.model(input_ids=step_input, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = self._next_token(out.logits[0, -1], generated, params, rng)
            if token == params.end_id:
                return
            generated.append(token)
            yield token
            if any(generated[-len(word) :] == word for word in params.stop_words):
                return
            step_input = torch.tensor([[token]])
