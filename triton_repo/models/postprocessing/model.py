"""postprocessing: token ids -> text, the ids of each call decoded alone (kept for compatibility).

The fronts (`ensemble`, `tensorrt_llm_bls`) detokenize incrementally themselves, per request; nothing in
the repository calls this model. It stays for clients and stock scripts that call it directly, and like
the stock model it keeps no state between calls: it decodes exactly the ids it is given (a character
split across calls shows as U+FFFD, as in any per-call decode). Sequences longer than the engine's
`max_seq_len` are refused before decoding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))

from repo_common import (  # noqa: E402
    BadRequest,
    error_response,
    flag,
    input_array,
    load_tokenizer,
    model_parameters,
    text_tensor,
)


class TritonPythonModel:
    def initialize(self, args):
        parameters = model_parameters(args)
        self.tokenizer = load_tokenizer(args, parameters)
        self.skip_special_tokens = flag(parameters.get("skip_special_tokens"), True)
        self.max_seq_len = int(parameters["max_seq_len"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self.postprocess(request))
            except BadRequest as error:
                responses.append(error_response(str(error)))
        return responses

    def postprocess(self, request):
        tokens = input_array(request, "TOKENS_BATCH")  # [batch, beams, tokens]
        lengths = input_array(request, "SEQUENCE_LENGTH")  # [batch, beams]
        tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
        lengths = lengths.reshape(tokens.shape[0], -1)
        if tokens.shape[-1] > self.max_seq_len:
            raise BadRequest(
                f"TOKENS_BATCH holds {tokens.shape[-1]} tokens per sequence; no sequence of this engine is "
                f"longer than {self.max_seq_len} (max_seq_len): send the ids of one answer."
            )
        texts = [
            self.tokenizer.decode(
                tokens[row, beam, : int(lengths[row, beam])].tolist(),
                skip_special_tokens=self.skip_special_tokens,
            )
            for row in range(tokens.shape[0])
            for beam in range(tokens.shape[1])
        ]
        output = text_tensor("OUTPUT", texts, (tokens.shape[0], tokens.shape[1]))
        return pb_utils.InferenceResponse(output_tensors=[output])
