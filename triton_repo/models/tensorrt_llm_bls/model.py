"""The front (served as `ensemble` and as `tensorrt_llm_bls`): preprocessing -> tensorrt_llm, per request.

Clients call the front with the names of TensorRT-LLM's ensemble (`text_input`, `max_tokens`, `stream`,
...) and get `text_output`. Each request runs on its own thread with its own state, so:
  - streamed Japanese is exact with or without a client request id: deltas hold back a character split
    across tokens and concatenate byte for byte to the non-streamed text (front_stream.py);
  - the engine is called by BLS as the stock BLS does (`preprocessing`, then `tensorrt_llm` with the
    tensor names of tensor_routes.py), always streaming, under a request id of the front's own making
    (random, never the client's): a `stop` sent to the engine with a client's id reaches nothing, and
    clients that reuse one id cannot touch each other;
  - a client that disconnects or cancels is noticed at the next engine response (a token) and the engine
    is stopped with a `stop` request under that id (Triton 2.51's BLS cannot cancel a request itself);
  - one prompt per request, one sequence per prompt: what the front cannot answer exactly it refuses, and
    every scalar outside its range (tensor_routes.RANGES) is refused naming the field.
Errors keep their kind: a client's mistake reaches HTTP clients as 400. Why a Python front and not a Triton
ensemble: docs/triton.md §5.4-§5.5.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))

from detokenizer import IncrementalDetokenizer  # noqa: E402
from front_stream import ClientResponse, FrontStream  # noqa: E402
from repo_common import (  # noqa: E402
    FINAL,
    BadRequest,
    ThreadPerRequestModel,
    flag,
    load_tokenizer,
    model_parameters,
    passed_on,
    scalar,
    text_tensor,
)
from tensor_routes import (  # noqa: E402
    CLIENT_INPUTS,
    ENGINE,
    ENGINE_STAT_OUTPUTS,
    FRONT_DECIDES,
    PRE,
    PRE_TO_ENGINE,
    request_refusal,
)

TO_PRE = {name: target for name, _, _, _, model, target in CLIENT_INPUTS if model == PRE}
TO_ENGINE = {
    name: target
    for name, _, _, _, model, target in CLIENT_INPUTS
    if model == ENGINE and target not in FRONT_DECIDES
}
STATS = {name: how for name, _, _, how in ENGINE_STAT_OUTPUTS}


def _inputs(request, mapping: dict[str, str]) -> list:
    found = []
    for client_name, target in mapping.items():
        tensor = pb_utils.get_input_tensor_by_name(request, client_name)
        if tensor is not None:
            found.append(pb_utils.Tensor(target, tensor.as_numpy()))
    return found


def _one(value, dtype) -> np.ndarray:
    return np.array([[value]], dtype=dtype)


class TritonPythonModel(ThreadPerRequestModel):
    name = "front"

    def initialize(self, args):
        parameters = model_parameters(args)
        self.name = args["model_name"]
        self.tokenizer = load_tokenizer(args, parameters)
        skip = flag(parameters.get("skip_special_tokens"), True)
        self.decode = lambda ids: self.tokenizer.decode(list(ids), skip_special_tokens=skip)
        self.engine_name = parameters.get("tensorrt_llm_model_name") or ENGINE

    def check(self, request) -> None:
        text = pb_utils.get_input_tensor_by_name(request, "text_input")
        rows = 0 if text is None else text.as_numpy().shape[0]
        if rows != 1:
            raise BadRequest(f"text_input holds {rows} prompts: send one prompt per request.")
        problem = request_refusal(lambda name: scalar(request, name))
        if problem:
            raise BadRequest(problem)

    def preprocess(self, request):
        """preprocessing's answer for the request (token ids, limits checked, word lists, ids)."""
        return pb_utils.InferenceRequest(
            model_name=PRE,
            inputs=_inputs(request, TO_PRE),
            requested_output_names=[name for name, _, _, _ in PRE_TO_ENGINE],
        ).exec()

    def run(self, request, sender):
        self.check(request)
        pre = self.preprocess(request)
        if pre.has_error():
            sender.send(passed_on(pre.error()), flags=FINAL)
            return
        engine_inputs = _inputs(request, TO_ENGINE)
        for name, _, _, target in PRE_TO_ENGINE:
            tensor = pb_utils.get_output_tensor_by_name(pre, name)
            if tensor is not None:
                engine_inputs.append(pb_utils.Tensor(target, tensor.as_numpy()))
        engine_inputs.append(pb_utils.Tensor("streaming", _one(True, np.bool_)))
        engine_inputs.append(pb_utils.Tensor("exclude_input_in_output", _one(True, np.bool_)))

        prompt = pb_utils.get_output_tensor_by_name(pre, "INPUT_ID").as_numpy().reshape(-1)
        prompt_length = int(
            pb_utils.get_output_tensor_by_name(pre, "REQUEST_INPUT_LEN").as_numpy().reshape(-1)[0]
        )
        echo = not scalar(request, "exclude_input_in_output", True)
        stream = FrontStream(
            IncrementalDetokenizer(self.decode),
            streaming=bool(scalar(request, "stream", False)),
            rules=STATS,
            echo_ids=prompt[:prompt_length].tolist() if echo else (),
        )
        counts = (
            prompt_length if scalar(request, "return_num_input_tokens", False) else None,
            bool(scalar(request, "return_num_output_tokens", False)),
        )
        engine_id = uuid.uuid4().hex  # unguessable, and no client's
        responses = pb_utils.InferenceRequest(
            model_name=self.engine_name,
            inputs=engine_inputs,
            requested_output_names=["output_ids", "sequence_length", *STATS],
            request_id=engine_id,
        ).exec(decoupled=True)
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
            stats = {}
            for name in STATS:
                tensor = pb_utils.get_output_tensor_by_name(response, name)
                if tensor is not None:
                    stats[name] = tensor.as_numpy()
            piece = stream.add(tokens.tolist(), stats)
            if piece is not None:
                sender.send(self.response(piece, counts))
        last = stream.finish()
        sender.send(None if last is None else self.response(last, counts), flags=FINAL)

    def cancel(self, engine_id: str) -> None:
        """Stop the engine's request `engine_id` (the stop request gets an empty final answer)."""
        stop = pb_utils.InferenceRequest(
            model_name=self.engine_name,
            inputs=[
                pb_utils.Tensor("input_ids", np.zeros((1, 1), dtype=np.int32)),
                pb_utils.Tensor("input_lengths", _one(1, np.int32)),
                pb_utils.Tensor("request_output_len", _one(1, np.int32)),
                pb_utils.Tensor("stop", _one(True, np.bool_)),
            ],
            requested_output_names=["output_ids"],
            request_id=engine_id,
        )
        for _ in stop.exec(decoupled=True):
            pass

    @staticmethod
    def response(piece: ClientResponse, counts: tuple[int | None, bool]):
        outputs = [text_tensor("text_output", [piece.text], (1, 1))]
        outputs += [pb_utils.Tensor(name, value) for name, value in piece.stats.items()]
        input_count, want_output_count = counts
        if input_count is not None:
            outputs.append(pb_utils.Tensor("num_input_tokens", _one(input_count, np.int32)))
        if want_output_count:
            outputs.append(pb_utils.Tensor("num_output_tokens", _one(piece.output_tokens, np.int32)))
        return pb_utils.InferenceResponse(output_tensors=outputs)
