"""A Triton Python-backend model with known timing, for validating `swallow-trt bench` end to end.

Decoupled, with the Swallow ensemble's tensor names (text_input, max_tokens, stream, optional
exclude_input_in_output / min_tokens / end_id / return_num_output_tokens -> text_output,
num_output_tokens). Each request streams `max_tokens` responses of one token ("東京"): the first
`ttft_ms` after the request reached the model, the rest `gap_ms` apart on an absolute schedule; the
last response carries the final flag. More than 1000 tokens is answered with an error response.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

MODEL_NAME = "ensemble"

TIMING_MODEL = textwrap.dedent(
    """
    import json
    import threading
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils

    LIMIT = 1000

    class TritonPythonModel:
        def initialize(self, args):
            params = json.loads(args["model_config"]).get("parameters", {})
            self.ttft = float(params["ttft_ms"]["string_value"]) / 1e3
            self.gap = float(params["gap_ms"]["string_value"]) / 1e3
            self.piece = params["piece"]["string_value"].encode("utf-8")
            self.threads = []

        def execute(self, requests):
            for request in requests:
                arrived = time.perf_counter()
                count = int(pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy().reshape(-1)[0])
                flag = pb_utils.get_input_tensor_by_name(request, "return_num_output_tokens")
                counts = flag is not None and bool(flag.as_numpy().reshape(-1)[0])
                thread = threading.Thread(
                    target=self.stream, args=(request.get_response_sender(), arrived, count, counts), daemon=True
                )
                thread.start()
                self.threads = [t for t in self.threads if t.is_alive()] + [thread]
            return None

        def stream(self, sender, arrived, count, counts):
            if count > LIMIT:  # a server-side error, so tests can see errors counted
                error = pb_utils.TritonError(f"max_tokens {count} exceeds {LIMIT}")
                sender.send(pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return
            for k in range(count):
                delay = arrived + self.ttft + k * self.gap - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                outputs = [pb_utils.Tensor("text_output", np.array([[self.piece]], dtype=object))]
                if counts:
                    outputs.append(pb_utils.Tensor("num_output_tokens", np.array([[1]], dtype=np.int32)))
                final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if k == count - 1 else 0
                sender.send(pb_utils.InferenceResponse(outputs), flags=final)

        def finalize(self):
            for thread in self.threads:
                thread.join(timeout=5)
    """
)

INPUTS = [
    ("text_input", mc.TYPE_STRING, False),
    ("max_tokens", mc.TYPE_INT32, False),
    ("stream", mc.TYPE_BOOL, True),
    ("exclude_input_in_output", mc.TYPE_BOOL, True),
    ("min_tokens", mc.TYPE_INT32, True),
    ("end_id", mc.TYPE_INT32, True),
    ("return_num_output_tokens", mc.TYPE_BOOL, True),
]
OUTPUTS = [("text_output", mc.TYPE_STRING), ("num_output_tokens", mc.TYPE_INT32)]


def write_timing_repo(root: Path, ttft_ms: float, gap_ms: float, piece: str = "東京") -> Path:
    """A model repository holding the timing model under the ensemble's name."""
    config = mc.ModelConfig(name=MODEL_NAME, backend="python", max_batch_size=8)
    config.model_transaction_policy.decoupled = True
    for name, dtype, optional in INPUTS:
        config.input.add(name=name, data_type=dtype, dims=[1], optional=optional)
    for name, dtype in OUTPUTS:
        config.output.add(name=name, data_type=dtype, dims=[-1] if dtype == mc.TYPE_STRING else [1])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    for key, value in {"ttft_ms": ttft_ms, "gap_ms": gap_ms, "piece": piece}.items():
        config.parameters[key].string_value = str(value)
    (root / MODEL_NAME / "1").mkdir(parents=True)
    (root / MODEL_NAME / "config.pbtxt").write_text(text_format.MessageToString(config))
    (root / MODEL_NAME / "1" / "model.py").write_text(TIMING_MODEL)
    return root
