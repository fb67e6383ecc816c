"""Which client tensor goes to which model, which values it may take, and which engine outputs come back.

The repository writer (triton_repo/repository/engine_configs.py) declares the fronts', preprocessing's
and the engine's tensors from it, and the front model (`ensemble` / `tensorrt_llm_bls`) routes requests
with it at run time. Names and types are the TensorRT-LLM `inflight_batcher_llm` ones (newest names:
`seed`, `min_tokens`, `return_num_*_tokens`; docs/triton.md §1), so genai-perf `--backend tensorrtllm`,
Triton's OpenAI frontend and tritonclient scripts work unchanged.

`RANGES` is the one table of what a client's scalar may be: every model that reads a request (the fronts,
preprocessing, the llmapi front) refuses a value outside it with a message naming the field, and the OpenAI
front's schema takes its bounds from it. Triton's HTTP `generate` parses JSON before any model runs: a
value of the wrong JSON type (a string, float or null for an INT32, a negative number for a UINT64) is
its own 500 "Unable to parse 'data'", and an integer of 2**31 or more is wrapped into INT32 (docs/triton.md
§6.4). `serve`'s HTTP gate refuses all of that before Triton parses it (triton_repo/launch/generate_check.py);
without it (the default), a wrapped negative is refused here with the wrap said.

This module is copied next to the models that read requests (they run where swallow-trt is not
installed), so it depends on nothing but the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

PRE, ENGINE = "preprocessing", "tensorrt_llm"

# name, Triton type (without TYPE_), dims, required, the model that takes it, its name there.
# Preprocessing resolves ids, limits and aliases (seed/random_seed, min_tokens/min_length); the rest
# goes to the engine as is, except what the front decides itself (FRONT_DECIDES).
CLIENT_INPUTS: tuple[tuple[str, str, tuple[int, ...], bool, str, str], ...] = (
    ("text_input", "STRING", (1,), True, PRE, "QUERY"),
    ("max_tokens", "INT32", (1,), True, PRE, "REQUEST_OUTPUT_LEN"),
    ("messages", "STRING", (1,), False, PRE, "MESSAGES"),  # JSON list of {"role", "content"}
    ("apply_chat_template", "BOOL", (1,), False, PRE, "APPLY_CHAT_TEMPLATE"),  # around text_input
    ("bad_words", "STRING", (-1,), False, PRE, "BAD_WORDS_DICT"),
    ("stop_words", "STRING", (-1,), False, PRE, "STOP_WORDS_DICT"),
    ("end_id", "INT32", (1,), False, PRE, "END_ID"),
    ("pad_id", "INT32", (1,), False, PRE, "PAD_ID"),
    ("seed", "UINT64", (1,), False, PRE, "SEED"),
    ("random_seed", "UINT64", (1,), False, PRE, "RANDOM_SEED"),
    ("min_tokens", "INT32", (1,), False, PRE, "MIN_TOKENS"),
    ("min_length", "INT32", (1,), False, PRE, "MIN_LENGTH"),
    ("exclude_input_in_output", "BOOL", (1,), False, ENGINE, "exclude_input_in_output"),
    ("stream", "BOOL", (1,), False, ENGINE, "streaming"),
    ("top_k", "INT32", (1,), False, ENGINE, "runtime_top_k"),
    ("top_p", "FP32", (1,), False, ENGINE, "runtime_top_p"),
    ("temperature", "FP32", (1,), False, ENGINE, "temperature"),
    ("length_penalty", "FP32", (1,), False, ENGINE, "len_penalty"),
    ("repetition_penalty", "FP32", (1,), False, ENGINE, "repetition_penalty"),
    ("presence_penalty", "FP32", (1,), False, ENGINE, "presence_penalty"),
    ("frequency_penalty", "FP32", (1,), False, ENGINE, "frequency_penalty"),
    ("beam_width", "INT32", (1,), False, ENGINE, "beam_width"),
    ("num_return_sequences", "INT32", (1,), False, ENGINE, "num_return_sequences"),
    ("return_log_probs", "BOOL", (1,), False, ENGINE, "return_log_probs"),
    ("return_context_logits", "BOOL", (1,), False, ENGINE, "return_context_logits"),
    ("return_generation_logits", "BOOL", (1,), False, ENGINE, "return_generation_logits"),
    ("return_perf_metrics", "BOOL", (1,), False, ENGINE, "return_perf_metrics"),
    ("return_num_input_tokens", "BOOL", (1,), False, ENGINE, "return_num_input_tokens"),
    ("return_num_output_tokens", "BOOL", (1,), False, ENGINE, "return_num_output_tokens"),
)

# Engine inputs the front sets itself whatever the client sent: the engine always streams (so a client
# that goes away is noticed within a token, streamed or not) and never echoes the prompt (the front
# decodes it when asked); token counts are the front's own.
FRONT_DECIDES = (
    "streaming",
    "exclude_input_in_output",
    "return_num_input_tokens",
    "return_num_output_tokens",
)

# preprocessing output, type, dims -> engine input
PRE_TO_ENGINE: tuple[tuple[str, str, tuple[int, ...], str], ...] = (
    ("INPUT_ID", "INT32", (-1,), "input_ids"),
    ("REQUEST_INPUT_LEN", "INT32", (1,), "input_lengths"),
    ("REQUEST_OUTPUT_LEN", "INT32", (1,), "request_output_len"),
    ("STOP_WORDS_IDS", "INT32", (2, -1), "stop_words_list"),
    ("BAD_WORDS_IDS", "INT32", (2, -1), "bad_words_list"),
    ("OUT_END_ID", "INT32", (1,), "end_id"),
    ("OUT_PAD_ID", "INT32", (1,), "pad_id"),
    ("OUT_SEED", "UINT64", (1,), "seed"),
    ("OUT_MIN_TOKENS", "INT32", (1,), "min_tokens"),
)

# How the values of several streamed engine responses make the value of one client response.
LAST, FIRST = "last", "first"
# an int: per-token values, joined along that axis ([1, beams, tokens] / [1, beams, tokens, vocab])
LOG_PROB_AXIS, LOGITS_AXIS = -1, -2

# engine output passed on to clients: name, type, dims, how streamed responses combine
ENGINE_STAT_OUTPUTS: tuple[tuple[str, str, tuple[int, ...], str | int], ...] = (
    ("cum_log_probs", "FP32", (-1,), LAST),
    ("output_log_probs", "FP32", (-1, -1), LOG_PROB_AXIS),
    ("context_logits", "FP32", (-1, -1), FIRST),
    ("generation_logits", "FP32", (-1, -1, -1), LOGITS_AXIS),
    ("batch_index", "INT32", (1,), LAST),
    ("sequence_index", "INT32", (1,), LAST),
    ("kv_cache_alloc_new_blocks", "INT32", (1,), LAST),
    ("kv_cache_reused_blocks", "INT32", (1,), LAST),
    ("kv_cache_alloc_total_blocks", "INT32", (1,), LAST),
    ("arrival_time_ns", "INT64", (1,), FIRST),
    ("first_scheduled_time_ns", "INT64", (1,), FIRST),
    ("first_token_time_ns", "INT64", (1,), FIRST),
    ("last_token_time_ns", "INT64", (1,), LAST),
    ("acceptance_rate", "FP32", (1,), LAST),
    ("total_accepted_draft_tokens", "INT32", (1,), LAST),
    ("total_draft_tokens", "INT32", (1,), LAST),
)
# outputs the front computes itself (the engine's own are per response in some versions, totals in others)
TOKEN_COUNT_OUTPUTS = ("num_input_tokens", "num_output_tokens")


INT32_MAX, UINT64_MAX = 2**31 - 1, 2**64 - 1


class Range(NamedTuple):
    """The values a client scalar may take: `kind` int or float, bounds inclusive unless `above` (then the
    value must be greater than `low`); None is unbounded."""

    kind: type
    low: float | None
    high: float | None
    above: bool = False


RANGES: dict[str, Range] = {
    "max_tokens": Range(int, 1, INT32_MAX),  # and at most the engine's max_seq_len - 1 (preprocessing)
    "min_tokens": Range(int, 0, INT32_MAX),
    "min_length": Range(int, 0, INT32_MAX),
    "end_id": Range(int, 0, INT32_MAX),
    "pad_id": Range(int, 0, INT32_MAX),
    "seed": Range(int, 0, UINT64_MAX),
    "random_seed": Range(int, 0, UINT64_MAX),
    "top_k": Range(int, 0, INT32_MAX),  # 0: no top-k cut
    "top_p": Range(float, 0.0, 1.0, above=True),
    "temperature": Range(float, 0.0, None),  # 0: greedy; TensorRT-LLM sets no upper bound (OpenAI: 2)
    "length_penalty": Range(float, None, None),
    "repetition_penalty": Range(float, 0.0, None, above=True),
    "presence_penalty": Range(float, -2.0, 2.0),
    "frequency_penalty": Range(float, -2.0, 2.0),
    "beam_width": Range(int, 1, 1),  # the engines are built for one sequence per prompt
    "num_return_sequences": Range(int, 1, 1),
}


def _shown(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def refusal(name: str, value: object, high: float | None = None) -> str | None:
    """Why `value` is no valid `name` (a message naming the field and what to send), or None if it is;
    `high` lowers the table's upper bound (max_tokens: the engine's)."""
    allowed = RANGES[name]
    low = allowed.low
    high = allowed.high if high is None or (allowed.high is not None and allowed.high < high) else high
    if low is not None and low == high:
        if value == low and not isinstance(value, bool):
            return None
        return f"{name} {value} is not served here: send {name} {_shown(low)} (or leave it out)."
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if allowed.kind is int:
        number = number and isinstance(value, int)
    if (
        number
        and math.isfinite(value)
        and (low is None or (value > low if allowed.above else value >= low))
        and (high is None or value <= high)
    ):
        return None
    bounds = " and ".join(
        filter(
            None,
            [
                f"{'above' if allowed.above else 'at least'} {_shown(low)}" if low is not None else "",
                f"at most {_shown(high)}" if high is not None else "",
            ],
        )
    )
    what = "an integer" if allowed.kind is int else "a finite number"
    message = f"{name} {value} is out of range: send {what}{' ' + bounds if bounds else ''}."
    if allowed.high == INT32_MAX and number and -(2**31) <= value < -(2**16):  # far below any typed value
        message += (
            f" (Triton's HTTP generate turns a JSON {name} of {value + 2**32} into {value}: INT32 wraps.)"
        )
    return message


def request_refusal(read: Callable[[str], object], names: Iterable[str] = RANGES) -> str | None:
    """The first refusal among the `names` a request sent (`read(name)`: its value, or None if absent)."""
    for name in names:
        value = read(name)
        problem = None if value is None else refusal(name, value)
        if problem:
            return problem
    return None
