"""postprocessing: token ids -> text, incrementally per request so streamed Japanese is never garbled.

In the ensemble each streamed engine response reaches this model as a separate call. The ensemble
gives every step the client's request id, so the detokenizer state is kept per request id (and
correlation id): deltas hold back a character split across tokens until it is complete. One instance
and no dynamic batching keep a stream's calls in order (tensorrtllm_backend #614).

Requests without an id cannot be told apart: their tokens are decoded on their own, as the stock
model does. Send an `id` when streaming through the ensemble, or use `tensorrt_llm_bls`, which keeps
its state per request without one. (A key made by preprocessing cannot stand in for the id: Triton 2.51
refuses an ensemble step whose inputs come from a decoupled step and from another step.) Since this model never learns which call is a stream's last, a
character cut off by max_tokens is dropped instead of shown as U+FFFD, in streamed and non-streamed
answers alike, and idle states expire.
"""

from __future__ import annotations

import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))

from detokenizer import REPLACEMENT, DetokenizerStates  # noqa: E402
from repo_common import flag, input_array, load_tokenizer, model_parameters, text_tensor  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        parameters = model_parameters(args)
        self.tokenizer = load_tokenizer(args, parameters)
        skip = flag(parameters.get("skip_special_tokens"), True)
        self.decode = lambda ids: self.tokenizer.decode(list(ids), skip_special_tokens=skip)
        self.states = DetokenizerStates(self.decode)

    def execute(self, requests):
        return [self.postprocess(request) for request in requests]

    def postprocess(self, request):
        tokens = input_array(request, "TOKENS_BATCH")  # [batch, beams, tokens]
        lengths = input_array(request, "SEQUENCE_LENGTH")  # [batch, beams]
        tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
        lengths = lengths.reshape(tokens.shape[0], -1)
        key = request.request_id()
        if key:
            key = f"{key}|{request.correlation_id()}"
        texts = []
        for row in range(tokens.shape[0]):
            for beam in range(tokens.shape[1]):
                ids = tokens[row, beam, : int(lengths[row, beam])].tolist()
                if key:
                    texts.append(self.states.get(f"{key}|{row}|{beam}").push(ids))
                else:
                    texts.append(self.decode(ids).rstrip(REPLACEMENT))
        output = text_tensor("OUTPUT", texts, (tokens.shape[0], tokens.shape[1]))
        return pb_utils.InferenceResponse(output_tensors=[output])

    def finalize(self):
        self.states = None
