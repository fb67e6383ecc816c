"""tensorrt_llm_bls: preprocessing -> tensorrt_llm (streamed) -> incremental detokenization, per request.

Each client request runs in its own thread with its own detokenizer, so concurrency is not limited
to the instance count and deltas go out in order. Streamed deltas concatenate to exactly the
non-streamed text: a character split across tokens is held back until complete, and what is left
at the end (a character cut off by max_tokens decodes as U+FFFD, as in the full decode) goes out
with the final response. The detokenizer state lives here instead of in `postprocessing`, because
only this model knows which engine response is the last. A cancelled client stops the engine
with a `stop` request carrying the same request id.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))

from detokenizer import IncrementalDetokenizer  # noqa: E402
from repo_common import (  # noqa: E402
    FINAL,
    ThreadPerRequestModel,
    error_response,
    flag,
    load_tokenizer,
    model_parameters,
    text_tensor,
)

# client input -> preprocessing input (the rest go to the engine under the names below)
TO_PREPROCESSING = {
    "text_input": "QUERY",
    "max_tokens": "REQUEST_OUTPUT_LEN",
    "messages": "MESSAGES",
    "apply_chat_template": "APPLY_CHAT_TEMPLATE",
    "bad_words": "BAD_WORDS_DICT",
    "stop_words": "STOP_WORDS_DICT",
    "end_id": "END_ID",
    "pad_id": "PAD_ID",
    "seed": "SEED",
    "random_seed": "RANDOM_SEED",
    "min_tokens": "MIN_TOKENS",
    "min_length": "MIN_LENGTH",
}
TO_ENGINE = {
    "exclude_input_in_output": "exclude_input_in_output",
    "stream": "streaming",
    "top_k": "runtime_top_k",
    "top_p": "runtime_top_p",
    "temperature": "temperature",
    "length_penalty": "len_penalty",
    "repetition_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "beam_width": "beam_width",
    "num_return_sequences": "num_return_sequences",
    "return_log_probs": "return_log_probs",
    "return_context_logits": "return_context_logits",
    "return_generation_logits": "return_generation_logits",
    "return_perf_metrics": "return_perf_metrics",
    "return_num_input_tokens": "return_num_input_tokens",
    "return_num_output_tokens": "return_num_output_tokens",
}
PRE_TO_ENGINE = {
    "INPUT_ID": "input_ids",
    "REQUEST_INPUT_LEN": "input_lengths",
    "REQUEST_OUTPUT_LEN": "request_output_len",
    "STOP_WORDS_IDS": "stop_words_list",
    "BAD_WORDS_IDS": "bad_words_list",
    "OUT_END_ID": "end_id",
    "OUT_PAD_ID": "pad_id",
    "OUT_SEED": "seed",
    "OUT_MIN_TOKENS": "min_tokens",
}
PASS_THROUGH = (
    "cum_log_probs",
    "output_log_probs",
    "context_logits",
    "generation_logits",
    "batch_index",
    "sequence_index",
    "kv_cache_alloc_new_blocks",
    "kv_cache_reused_blocks",
    "kv_cache_alloc_total_blocks",
    "arrival_time_ns",
    "first_scheduled_time_ns",
    "first_token_time_ns",
    "last_token_time_ns",
    "acceptance_rate",
    "total_accepted_draft_tokens",
    "total_draft_tokens",
    "num_input_tokens",
)


def _inputs(request, mapping: dict[str, str]) -> list:
    found = []
    for client_name, target in mapping.items():
        tensor = pb_utils.get_input_tensor_by_name(request, client_name)
        if tensor is not None:
            found.append(pb_utils.Tensor(target, tensor.as_numpy()))
    return found


class TritonPythonModel(ThreadPerRequestModel):
    name = "tensorrt_llm_bls"

    def initialize(self, args):
        parameters = model_parameters(args)
        self.tokenizer = load_tokenizer(args, parameters)
        skip = flag(parameters.get("skip_special_tokens"), True)
        self.decode = lambda ids: self.tokenizer.decode(list(ids), skip_special_tokens=skip)
        self.engine_name = parameters.get("tensorrt_llm_model_name") or "tensorrt_llm"

    def run(self, request, sender):
        pre = pb_utils.InferenceRequest(
            model_name="preprocessing",
            inputs=_inputs(request, TO_PREPROCESSING),
            requested_output_names=list(PRE_TO_ENGINE),
        ).exec()
        if pre.has_error():
            sender.send(error_response(pre.error().message()), flags=FINAL)
            return
        engine_inputs = _inputs(request, TO_ENGINE)
        for name, target in PRE_TO_ENGINE.items():
            tensor = pb_utils.get_output_tensor_by_name(pre, name)
            if tensor is not None:
                engine_inputs.append(pb_utils.Tensor(target, tensor.as_numpy()))
        stream_tensor = pb_utils.get_input_tensor_by_name(request, "stream")
        streaming = bool(stream_tensor is not None and stream_tensor.as_numpy().reshape(-1)[0])
        engine_id = f"bls-{request.request_id()}-{uuid.uuid4().hex}"  # unique, and traceable in the log
        responses = pb_utils.InferenceRequest(
            model_name=self.engine_name,
            inputs=engine_inputs,
            requested_output_names=["output_ids", "sequence_length", "num_output_tokens", *PASS_THROUGH],
            request_id=engine_id,
        ).exec(decoupled=True)

        detokenizer = IncrementalDetokenizer(self.decode)
        texts: list[str] = []
        stats: dict[str, np.ndarray] = {}
        unsent_tokens: int | None = None  # output tokens not yet reported to the client
        for response in responses:
            if self.ended_early(request, sender, response, engine_id):
                return
            ids = pb_utils.get_output_tensor_by_name(response, "output_ids")
            if ids is None:
                continue  # the engine's empty final response
            tokens = ids.as_numpy().reshape(-1)
            length = pb_utils.get_output_tensor_by_name(response, "sequence_length")
            if length is not None:
                tokens = tokens[: int(length.as_numpy().reshape(-1)[0])]
            for name in PASS_THROUGH:
                tensor = pb_utils.get_output_tensor_by_name(response, name)
                if tensor is not None:
                    stats[name] = tensor.as_numpy()
            count = pb_utils.get_output_tensor_by_name(response, "num_output_tokens")
            if count is not None:  # per response, like Triton's OpenAI frontend sums them
                unsent_tokens = (unsent_tokens or 0) + int(count.as_numpy().reshape(-1)[0])
            delta = detokenizer.push(tokens.tolist())
            if streaming and delta:
                sender.send(self.response(delta, stats, unsent_tokens))
                unsent_tokens = None if unsent_tokens is None else 0
            elif not streaming:
                texts.append(delta)
        rest = detokenizer.flush()
        if not streaming:
            sender.send(self.response("".join(texts) + rest, stats, unsent_tokens), flags=FINAL)
        elif rest or unsent_tokens:  # held-back text, or tokens that made no text, end the stream
            sender.send(self.response(rest, stats, unsent_tokens), flags=FINAL)
        else:
            sender.send(None, flags=FINAL)

    def cancel(self, engine_id: str) -> None:
        """Ask the engine to stop generating for `engine_id` (Triton 2.51 BLS has no request cancel)."""
        one = lambda dtype, value: np.array([[value]], dtype=dtype)  # noqa: E731
        stop = pb_utils.InferenceRequest(
            model_name=self.engine_name,
            inputs=[
                pb_utils.Tensor("input_ids", np.zeros((1, 1), dtype=np.int32)),
                pb_utils.Tensor("input_lengths", one(np.int32, 1)),
                pb_utils.Tensor("request_output_len", one(np.int32, 1)),
                pb_utils.Tensor("stop", one(np.bool_, True)),
            ],
            requested_output_names=["output_ids"],
            request_id=engine_id,
        )
        for _ in stop.exec(decoupled=True):
            pass

    @staticmethod
    def response(text: str, stats: dict[str, np.ndarray], output_tokens: int | None):
        outputs = [text_tensor("text_output", [text], (1, 1))]
        outputs += [pb_utils.Tensor(name, value) for name, value in stats.items()]
        if output_tokens is not None:
            outputs.append(pb_utils.Tensor("num_output_tokens", np.array([[output_tokens]], dtype=np.int32)))
        return pb_utils.InferenceResponse(output_tensors=outputs)
