"""preprocessing: text (or chat messages) -> token ids, limits checked, stop/bad words as id lists.

- Size first: a prompt, `messages` or word list that cannot fit `max_input_len` tokens is refused by its
  byte count before any tokenizing or template work (prompt_limits.py); then the token count decides.
- One BOS only: added unless the prompt already starts with one (a chat template rendered by the
  client, as Triton's OpenAI frontend does).
- Chat: a `messages` JSON list, or `apply_chat_template` true around `text_input`, is rendered with the
  tokenizer's chat template (which carries the BOS itself), in Jinja's sandbox with its output capped.
- Default end id: the tokenizer's eos token (`<|eot_id|>` 128009 for Llama-3.1-Swallow Instruct); the
  other end ids of `generation_config.json` (`<|end_of_text|>`, `<|eom_id|>`) become default stop words,
  since the engine takes a single end id.
- Stop/bad words: each string encoded alone, packed as [2, L] (ids; cumulative end offsets, -1 pad).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))

from prompt_limits import JSON_BYTES_PER_TEXT_BYTE, PromptLimits, PromptRefused  # noqa: E402
from repo_common import (  # noqa: E402
    BadRequest,
    error_response,
    flag,
    input_array,
    load_tokenizer,
    model_parameters,
    repository_path,
    scalar,
    strings,
)
from tensor_routes import refusal  # noqa: E402


def raw_sizes(array: np.ndarray | None) -> list[int]:
    """Byte sizes of a BYTES tensor's elements, read before decoding them."""
    return [] if array is None else [len(item) for item in array.reshape(-1)]


class TritonPythonModel:
    def initialize(self, args):
        parameters = model_parameters(args)
        self.tokenizer = load_tokenizer(args, parameters)
        self.add_bos = flag(parameters.get("add_special_tokens"), True)
        self.max_input_len = int(parameters["max_input_len"])
        self.max_seq_len = int(parameters["max_seq_len"])
        self.limits = PromptLimits(self.tokenizer, self.max_input_len)
        tok = self.tokenizer
        self.bos_id = tok.bos_token_id
        self.end_id = tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.default_stop_ids = self.other_end_ids(repository_path(args, parameters["tokenizer_dir"]))

    def other_end_ids(self, tokenizer_dir: Path) -> list[int]:
        path = tokenizer_dir / "generation_config.json"
        if not path.is_file():
            return []
        ends = json.loads(path.read_text()).get("eos_token_id")
        ends = ends if isinstance(ends, list) else [ends]
        return [int(i) for i in ends if i is not None and i != self.end_id]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self.preprocess(request))
            except (BadRequest, PromptRefused) as error:
                responses.append(error_response(str(error)))
        return responses

    def prompt_ids(self, text: str, messages: str | None, apply_template: bool) -> list[int]:
        if messages:
            conversation = self.limits.messages(messages)
            if text:
                conversation.append({"role": "user", "content": text})
            rendered = self.limits.render(conversation, "messages")
        elif apply_template:
            rendered = self.limits.render([{"role": "user", "content": text}], "text_input")
        else:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if self.add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
                ids = [self.bos_id, *ids]
            self.limits.check_tokens("text_input", len(ids))
            return ids
        ids = self.tokenizer.encode(rendered, add_special_tokens=False)  # the template holds the BOS
        self.limits.check_tokens("messages" if messages else "text_input", len(ids))
        return ids

    def word_list(self, words: list[str], extra_ids: tuple[int, ...] = ()) -> np.ndarray:
        """[2, L]: concatenated ids, then cumulative end offsets padded with -1."""
        ids: list[int] = []
        offsets: list[int] = []
        encoded = [self.tokenizer.encode(word, add_special_tokens=False) for word in words if word]
        for word_ids in encoded + [[i] for i in extra_ids]:
            ids += word_ids
            offsets.append(len(ids))
        offsets += [-1] * (len(ids) - len(offsets))
        return np.array([ids, offsets], dtype=np.int32).reshape(2, len(ids))

    def checked_inputs(self, request) -> tuple[list[str], list[str], list[str], list[str]]:
        """Prompts, messages, stop and bad words, each refused by size before it is decoded."""
        found = {}
        for name, field, per_byte in (
            ("QUERY", "text_input", 1),
            ("MESSAGES", "messages", JSON_BYTES_PER_TEXT_BYTE),
            ("STOP_WORDS_DICT", "stop_words", 1),
            ("BAD_WORDS_DICT", "bad_words", 1),
        ):
            array = input_array(request, name)
            self.limits.check_bytes(field, raw_sizes(array), per_byte)
            found[field] = strings(array, field)
        for field in ("stop_words", "bad_words"):
            self.limits.check_words(field, found[field])
        return found["text_input"], found["messages"], found["stop_words"], found["bad_words"]

    def preprocess(self, request):
        max_tokens = scalar(request, "REQUEST_OUTPUT_LEN", 0)
        problem = refusal("max_tokens", max_tokens, high=self.max_seq_len - 1)
        if problem:
            raise BadRequest(f"{problem} The engine's max_seq_len {self.max_seq_len} holds a prompt too.")
        queries, messages, stop_words, bad_words = self.checked_inputs(request)
        apply_template = bool(scalar(request, "APPLY_CHAT_TEMPLATE", False))

        batch = []
        for row, text in enumerate(queries):
            ids = self.prompt_ids(text, messages[row] if row < len(messages) else None, apply_template)
            if len(ids) + max_tokens > self.max_seq_len:
                raise BadRequest(
                    f"max_tokens {max_tokens} is above the engine limit: with a {len(ids)}-token prompt at most "
                    f"{self.max_seq_len - len(ids)} tokens fit in max_seq_len {self.max_seq_len}. Lower max_tokens."
                )
            batch.append(ids)

        width = max(len(ids) for ids in batch)
        pad_id = int(scalar(request, "PAD_ID", self.pad_id))
        requested_end_id = scalar(request, "END_ID")
        end_id = int(self.end_id if requested_end_id is None else requested_end_id)
        extra_stops = tuple(self.default_stop_ids) if requested_end_id is None else ()
        input_ids = np.full((len(batch), width), pad_id, dtype=np.int32)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
        column = lambda value, dtype=np.int32: np.full((len(batch), 1), value, dtype=dtype)  # noqa: E731
        stop, bad = self.word_list(stop_words, extra_stops), self.word_list(bad_words)
        outputs = [
            pb_utils.Tensor("INPUT_ID", input_ids),
            pb_utils.Tensor("REQUEST_INPUT_LEN", np.array([[len(ids)] for ids in batch], dtype=np.int32)),
            pb_utils.Tensor("REQUEST_OUTPUT_LEN", column(max_tokens)),
            pb_utils.Tensor("STOP_WORDS_IDS", np.repeat(stop[None], len(batch), axis=0)),
            pb_utils.Tensor("BAD_WORDS_IDS", np.repeat(bad[None], len(batch), axis=0)),
            pb_utils.Tensor("OUT_END_ID", column(end_id)),
            pb_utils.Tensor("OUT_PAD_ID", column(pad_id)),
        ]
        seed = scalar(request, "SEED", scalar(request, "RANDOM_SEED"))
        if seed is not None:
            outputs.append(pb_utils.Tensor("OUT_SEED", column(seed, np.uint64)))
        min_tokens = scalar(request, "MIN_TOKENS", scalar(request, "MIN_LENGTH"))
        if min_tokens is not None:
            outputs.append(pb_utils.Tensor("OUT_MIN_TOKENS", column(min_tokens)))
        return pb_utils.InferenceResponse(output_tensors=outputs)
