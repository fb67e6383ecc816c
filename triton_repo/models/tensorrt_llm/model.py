"""tensorrt_llm (CPU): the reference runtime serving a TensorRT-LLM checkpoint, decoupled like the executor.

Same tensors as the C++ `tensorrtllm` backend. Each request runs in its own thread: with
`streaming` true one response per token (the new token only), otherwise exactly one response (so
HTTP `generate` works). A cancelled request, or a `stop` request with the same request id, ends its
generation before the next token. It reports the C++ backend's metric families that say what it is
doing: `nv_trt_llm_request_metrics{request_type="active"}` (requests generating now) and the
`nv_llm_input_token_len` / `nv_llm_output_token_len` histograms (tokens per finished request, a
cancelled one included). Runs only in swallow-trt's own environment, so it imports the installed package.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_repo.models.cpu_engine import CpuEngine, RequestError, SamplingParams, load_model, word_lists
from triton_repo.models.engine_metrics import EngineMetrics

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _value(request, name, default=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None or tensor.as_numpy().size == 0:
        return default
    return tensor.as_numpy().reshape(-1)[0].item()


def _array(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.exclude_input_default = parameters.get("exclude_input_in_output", "true").lower() == "true"
        self.engine = CpuEngine(
            load_model(parameters["checkpoint_dir"]),
            max_input_len=int(parameters["max_input_len"]),
            max_seq_len=int(parameters["max_seq_len"]),
        )
        self.running: defaultdict[str, set[threading.Event]] = defaultdict(set)  # request id -> its stops
        self.running_lock = threading.Lock()
        self.threads: set[threading.Thread] = set()
        self.metrics = EngineMetrics(args["model_name"], args["model_version"])

    def execute(self, requests):
        for request in requests:
            if _value(request, "stop", False):
                self.stop(request)
                continue
            thread = threading.Thread(target=self.serve, args=(request,), daemon=True)
            self.threads.add(thread)
            thread.start()
        return None

    def stop(self, request):
        """Stop every running request with this request id, as the C++ backend's `stop` does."""
        with self.running_lock:
            events = list(self.running.get(request.request_id(), ()))
        for event in events:
            event.set()
        request.get_response_sender().send(flags=FINAL)

    def serve(self, request):
        sender = request.get_response_sender()
        stop_event = threading.Event()
        key = request.request_id()
        with self.running_lock:
            self.running[key].add(stop_event)
        try:
            self.generate(request, sender, stop_event)
        except RequestError as error:
            invalid = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
            sender.send(pb_utils.InferenceResponse(error=invalid), flags=FINAL)
        except Exception as error:  # an engine bug must not leave the client waiting
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"CPU engine failed: {error!r}")),
                flags=FINAL,
            )
        finally:
            with self.running_lock:
                self.running[key].discard(stop_event)
                if not self.running[key]:
                    del self.running[key]
            self.threads.discard(threading.current_thread())

    def generate(self, request, sender, stop_event):
        input_ids = _array(request, "input_ids")
        if input_ids.shape[0] != 1:
            raise RequestError(f"Send one prompt per request (got a batch of {input_ids.shape[0]}).")
        length = int(_value(request, "input_lengths", input_ids.shape[-1]))
        prompt = input_ids.reshape(-1)[:length].tolist()
        stop_words, bad_words = _array(request, "stop_words_list"), _array(request, "bad_words_list")
        params = SamplingParams(
            max_tokens=int(_value(request, "request_output_len", 0)),
            end_id=_value(request, "end_id"),
            temperature=_value(request, "temperature"),
            top_k=_value(request, "runtime_top_k"),
            top_p=_value(request, "runtime_top_p"),
            seed=_value(request, "seed"),
            min_tokens=int(_value(request, "min_tokens", 0)),
            repetition_penalty=_value(request, "repetition_penalty"),
            stop_words=word_lists(stop_words[0]) if stop_words is not None else [],
            bad_words=word_lists(bad_words[0]) if bad_words is not None else [],
        )
        streaming = bool(_value(request, "streaming", False))
        exclude_input = bool(_value(request, "exclude_input_in_output", self.exclude_input_default))
        counts = (
            bool(_value(request, "return_num_input_tokens", False)),
            bool(_value(request, "return_num_output_tokens", False)),
        )

        def cancelled() -> bool:
            return stop_event.is_set() or request.is_cancelled() or sender.is_cancelled()

        self.engine.check(prompt, params)  # a refused request is no generation
        generated: list[int] = []
        with self.metrics.generating(len(prompt), generated):
            for token in self.engine.generate(prompt, params, cancelled):
                generated.append(token)
                if streaming:
                    sender.send(self.response([token], len(prompt), 1, counts))  # counts are per response
        if cancelled():
            pb_utils.Logger.log_info(
                f"tensorrt_llm: request '{request.request_id()}' cancelled after {len(generated)} tokens"
            )
            sender.send(flags=FINAL)
            return
        if streaming:
            sender.send(flags=FINAL)
            return
        tokens = generated if exclude_input else prompt + generated
        sender.send(self.response(tokens, len(prompt), len(generated), counts), flags=FINAL)

    @staticmethod
    def response(tokens, num_input, num_output, counts):
        column = lambda value: np.array([[value]], dtype=np.int32)  # noqa: E731
        outputs = [
            pb_utils.Tensor("output_ids", np.array([[tokens]], dtype=np.int32)),
            pb_utils.Tensor("sequence_length", column(len(tokens))),
            pb_utils.Tensor("batch_index", column(0)),
            pb_utils.Tensor("sequence_index", column(0)),
        ]
        if counts[0]:
            outputs.append(pb_utils.Tensor("num_input_tokens", column(num_input)))
        if counts[1]:
            outputs.append(pb_utils.Tensor("num_output_tokens", column(num_output)))
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def finalize(self):
        with self.running_lock:
            for events in self.running.values():
                for event in events:
                    event.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
