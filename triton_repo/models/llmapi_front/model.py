"""tensorrt_llm_bls (pytorch target): the engine repository's client names in front of the `llmapi` model.

Clients keep sending `text_input`/`max_tokens`/`stream`/... and get `text_output` deltas. Per request:
  - the prompt: `messages` (JSON) or `apply_chat_template` rendered with the tokenizer's chat template,
    else `text_input` as is; a leading `<|begin_of_text|>` is removed, because the LLM API always adds
    one (add_special_tokens cannot be turned off through Triton): exactly one BOS. A prompt or
    `messages` too large for `max_input_len` tokens is refused by its size before any rendering or
    tokenizing, and rendering runs in Jinja's sandbox with its output capped (prompt_limits.py);
  - `sampling_param_exclude_input_from_output` true unless the client asks otherwise (the stock model
    defaults to echoing the prompt);
  - `stop_words` -> `sampling_param_stop`; sampling inputs renamed to `sampling_param_*`, each refused
    naming the field when outside its range (tensor_routes.RANGES);
  - the llmapi model streams the whole text so far; `CumulativeText` turns it into deltas that hold
    back a trailing U+FFFD and concatenate to the final text. Non-streaming: one response.
  - `num_input_tokens` / `num_output_tokens` when asked: counted with the same tokenizer (the llmapi
    model returns no counts); streamed counts are per response and sum to the final count.
The llmapi request runs under a request id of the front's own making (random, never the client's), so a
`stop` sent with a client's id reaches nothing; a cancelled client stops it with a `stop` under that id.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))

from prompt_limits import JSON_BYTES_PER_TEXT_BYTE, PromptLimits, PromptRefused  # noqa: E402
from repo_common import (  # noqa: E402
    FINAL,
    BadRequest,
    ThreadPerRequestModel,
    flag,
    input_array,
    load_tokenizer,
    model_parameters,
    scalar,
    strings,
    text_tensor,
)
from tensor_routes import request_refusal  # noqa: E402
from text_deltas import CumulativeText  # noqa: E402

# client input -> (llmapi input, numpy dtype); scalars
TO_LLMAPI = {
    "max_tokens": ("sampling_param_max_tokens", np.int32),
    "temperature": ("sampling_param_temperature", np.float32),
    "top_k": ("sampling_param_top_k", np.int32),
    "top_p": ("sampling_param_top_p", np.float32),
    "presence_penalty": ("sampling_param_presence_penalty", np.float32),
    "frequency_penalty": ("sampling_param_frequency_penalty", np.float32),
    "seed": ("sampling_param_seed", np.uint64),
    "random_seed": ("sampling_param_seed", np.uint64),
    "return_perf_metrics": ("sampling_param_return_perf_metrics", np.bool_),
}
# llmapi output -> the dtype our front declares (the stock model sends some perf metrics as strings)
PASS_THROUGH = {
    "finish_reason": np.object_,
    "kv_cache_reused_block": np.int32,
    "kv_cache_missed_block": np.int32,
    "kv_cache_alloc_new_blocks": np.int32,
    "kv_cache_alloc_total_blocks": np.int32,
    "kv_cache_hit_rate": np.float32,
    "arrival_time_ns": np.int64,
    "first_scheduled_time_ns": np.int64,
    "first_token_time_ns": np.int64,
    "last_token_time_ns": np.int64,
    "acceptance_rate": np.float32,
    "total_accepted_draft_tokens": np.int32,
    "total_draft_tokens": np.int32,
}


class TritonPythonModel(ThreadPerRequestModel):
    name = "tensorrt_llm_bls"

    def initialize(self, args):
        parameters = model_parameters(args)
        self.tokenizer = load_tokenizer(args, parameters)
        self.bos_text = self.tokenizer.bos_token or ""
        self.engine_name = parameters.get("tensorrt_llm_model_name") or "tensorrt_llm"
        self.exclude_input_default = flag(parameters.get("exclude_input_in_output"), True)
        self.limits = PromptLimits(self.tokenizer, int(parameters["max_input_len"]))

    def prompt(self, request) -> str:
        """The text the LLM API tokenizes (it adds the one BOS itself)."""
        raw_texts, raw_messages = input_array(request, "text_input"), input_array(request, "messages")
        try:
            self.limits.check_bytes("text_input", [len(item) for item in raw_texts.reshape(-1)])
            if raw_messages is not None:
                sizes = [len(item) for item in raw_messages.reshape(-1)]
                self.limits.check_bytes("messages", sizes, JSON_BYTES_PER_TEXT_BYTE)
            texts, messages = strings(raw_texts, "text_input"), strings(raw_messages, "messages")
            if len(texts) != 1:
                raise BadRequest(f"Send one prompt per request (got {len(texts)}).")
            text = texts[0]
            if messages and messages[0]:
                conversation = self.limits.messages(messages[0])
                if text:
                    conversation.append({"role": "user", "content": text})
                text = self.limits.render(conversation, "messages")
            elif scalar(request, "apply_chat_template", False):
                text = self.limits.render([{"role": "user", "content": text}], "text_input")
        except PromptRefused as refused:
            raise BadRequest(str(refused)) from None
        while self.bos_text and text.startswith(self.bos_text):
            text = text[len(self.bos_text) :]
        return text

    def llmapi_inputs(self, request, prompt: str, streaming: bool) -> list:
        problem = request_refusal(lambda name: scalar(request, name))
        if problem:
            raise BadRequest(problem)
        one = lambda value, dtype: np.array([value], dtype=dtype)  # noqa: E731
        exclude = scalar(request, "exclude_input_in_output", self.exclude_input_default)
        inputs = [
            text_tensor("text_input", [prompt], (1,)),
            pb_utils.Tensor("streaming", one(streaming, np.bool_)),
            pb_utils.Tensor("sampling_param_exclude_input_from_output", one(bool(exclude), np.bool_)),
            pb_utils.Tensor("return_finish_reason", one(True, np.bool_)),
        ]
        for client_name, (target, dtype) in TO_LLMAPI.items():
            value = scalar(request, client_name)
            if value is not None and all(t.name() != target for t in inputs):
                inputs.append(pb_utils.Tensor(target, one(value, dtype)))
        stops = [s for s in strings(input_array(request, "stop_words"), "stop_words") if s]
        if stops:
            inputs.append(text_tensor("sampling_param_stop", stops, (len(stops),)))
        return inputs

    def run(self, request, sender):
        prompt = self.prompt(request)
        streaming = bool(scalar(request, "stream", False))
        want_input_count = bool(scalar(request, "return_num_input_tokens", False))
        want_output_count = bool(scalar(request, "return_num_output_tokens", False))
        engine_id = uuid.uuid4().hex  # unguessable, and no client's
        responses = pb_utils.InferenceRequest(
            model_name=self.engine_name,
            inputs=self.llmapi_inputs(request, prompt, streaming),
            requested_output_names=["text_output", *PASS_THROUGH],
            request_id=engine_id,
        ).exec(decoupled=True)
        input_count = (
            len(self.tokenizer.encode(prompt, add_special_tokens=True)) if want_input_count else None
        )
        text = CumulativeText()
        last, stats, counted = "", {}, 0
        for response in responses:
            if self.ended_early(request, sender, response, engine_id):
                return
            output = pb_utils.get_output_tensor_by_name(response, "text_output")
            if output is None:
                continue  # an empty final response
            item = output.as_numpy().reshape(-1)[0]
            last = item.decode("utf-8") if isinstance(item, bytes) else str(item)
            for name, dtype in PASS_THROUGH.items():
                tensor = pb_utils.get_output_tensor_by_name(response, name)
                if tensor is not None:
                    stats[name] = tensor.as_numpy().astype(dtype).reshape(1, -1)
            if streaming:
                delta = text.push(last)
                if delta:
                    counted, count = self.count(text.sent, counted, want_output_count)
                    sender.send(self.response(delta, stats, input_count, count))
                    input_count = None  # once per stream
        rest = text.finish(last)
        if not streaming or rest:
            counted, count = self.count(text.sent, counted, want_output_count)
            sender.send(self.response(rest, stats, input_count, count), flags=FINAL)
        else:
            sender.send(None, flags=FINAL)

    def count(self, sent: str, counted: int, wanted: bool) -> tuple[int, int | None]:
        """(total so far, this response's share) of the output tokens, by the tokenizer."""
        if not wanted:
            return counted, None
        total = len(self.tokenizer.encode(sent, add_special_tokens=False))
        return total, total - counted

    def cancel(self, engine_id: str) -> None:
        stop = pb_utils.InferenceRequest(
            model_name=self.engine_name,
            inputs=[
                text_tensor("text_input", [""], (1,)),
                pb_utils.Tensor("stop", np.array([True], dtype=np.bool_)),
            ],
            requested_output_names=["text_output"],
            request_id=engine_id,
        )
        for _ in stop.exec(decoupled=True):
            pass

    @staticmethod
    def response(text: str, stats: dict, input_count: int | None, output_count: int | None):
        outputs = [text_tensor("text_output", [text], (1, 1))]
        for name, value in stats.items():
            outputs.append(pb_utils.Tensor(name, value))
        column = lambda value: np.array([[value]], dtype=np.int32)  # noqa: E731
        if input_count is not None:
            outputs.append(pb_utils.Tensor("num_input_tokens", column(input_count)))
        if output_count is not None:
            outputs.append(pb_utils.Tensor("num_output_tokens", column(output_count)))
        return pb_utils.InferenceResponse(output_tensors=outputs)
