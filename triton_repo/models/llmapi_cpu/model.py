"""tensorrt_llm (CPU stand-in for TensorRT-LLM's `llmapi` model): same I/O and streaming semantics.

Where there is no GPU, a pytorch-target repository runs this model instead of the stock llmapi
`model.py`, so our front (tensorrt_llm_bls) is served and tested end to end on the CPU. It reads the
same `model.yaml` (`model` = the HF checkpoint directory, `tokenizer` optional, `max_seq_len`) and
behaves like the stock model as docs/triton.md §4 describes it:
  - `text_input` is tokenized with special tokens (one BOS added, as the LLM API does);
  - streamed responses carry the cumulative text so far, the last one flagged final; decoded naively
    each step, so a character split over tokens shows up as a trailing U+FFFD (a harsher stream than
    the real detokenizer, which holds such tails back: the front must cope with both);
  - `sampling_param_exclude_input_from_output` defaults to False (the prompt is echoed), max_tokens to 32;
  - `sampling_param_stop` strings end generation and are not included in the text;
  - a `stop` request with the same request id, or a cancelled client, ends the generation;
  - it reports the CPU engines' metrics (engine_metrics.py), which the stock model does not.
Runs only in swallow-trt's own environment, so it imports the installed package.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
import yaml

from triton_repo.models.cpu_engine import CpuEngine, RequestError, SamplingParams, load_model
from triton_repo.models.engine_metrics import EngineMetrics
from trt_build.source.tokenizer_loading import load_local_tokenizer

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
DEFAULT_MAX_TOKENS = 32  # tensorrt_llm SamplingParams default


def _value(request, name, default=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None or tensor.as_numpy().size == 0:
        return default
    item = tensor.as_numpy().reshape(-1)[0]
    return item.item() if hasattr(item, "item") else item


def _strings(request, name) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return []
    return [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in tensor.as_numpy().reshape(-1)]


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        options = yaml.safe_load((version_dir / os.environ.get("LLM_CONFIG_PATH", "model.yaml")).read_text())
        self.tokenizer = load_local_tokenizer(options.get("tokenizer") or options["model"])
        max_seq_len = int(options.get("max_seq_len") or 4096)
        self.engine = CpuEngine(
            load_model(options["model"]), max_input_len=max_seq_len - 1, max_seq_len=max_seq_len
        )
        generation = Path(options["model"]) / "generation_config.json"
        ends = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
        ends = ends if isinstance(ends, list) else [ends]
        self.end_id = self.tokenizer.eos_token_id
        self.other_end_ids = [int(e) for e in ends if e is not None and e != self.end_id]
        self.running: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.threads: set[threading.Thread] = set()
        self.metrics = EngineMetrics(args["model_name"], args["model_version"])

    def execute(self, requests):
        for request in requests:
            if _value(request, "stop", False):
                with self.lock:
                    event = self.running.get(request.request_id())
                if event is not None:
                    event.set()
                error = pb_utils.TritonError("Request cancelled by client")
                request.get_response_sender().send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            thread = threading.Thread(target=self.serve, args=(request,), daemon=True)
            self.threads.add(thread)
            thread.start()
        return None

    def serve(self, request):
        sender = request.get_response_sender()
        stop_event, key = threading.Event(), request.request_id()
        if key:
            with self.lock:
                self.running[key] = stop_event
        try:
            self.generate(request, sender, stop_event)
        except (RequestError, ValueError) as error:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))), flags=FINAL)
        except Exception as error:
            message = f"Error generating request: {error!r}"
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)), flags=FINAL)
        finally:
            if key:
                with self.lock:
                    self.running.pop(key, None)
            self.threads.discard(threading.current_thread())

    def generate(self, request, sender, stop_event):
        texts = _strings(request, "text_input")
        if len(texts) != 1:
            raise ValueError("The current implementation only supports text_input being a 1D tensor.")
        prompt_text = texts[0]
        prompt = self.tokenizer.encode(prompt_text, add_special_tokens=True)
        stops = [
            self.tokenizer.encode(s, add_special_tokens=False)
            for s in _strings(request, "sampling_param_stop")
        ]
        stops = [s for s in stops if s] + [[e] for e in self.other_end_ids]
        params = SamplingParams(
            max_tokens=int(_value(request, "sampling_param_max_tokens", DEFAULT_MAX_TOKENS)),
            end_id=self.end_id,
            temperature=_value(request, "sampling_param_temperature"),
            top_k=_value(request, "sampling_param_top_k"),
            top_p=_value(request, "sampling_param_top_p"),
            seed=_value(request, "sampling_param_seed"),
            stop_words=stops,
        )
        streaming = bool(_value(request, "streaming", False))
        echo = "" if _value(request, "sampling_param_exclude_input_from_output", False) else prompt_text
        want_reason = bool(_value(request, "return_finish_reason", False))

        def cancelled() -> bool:
            return stop_event.is_set() or request.is_cancelled() or sender.is_cancelled()

        self.engine.check(prompt, params)  # a refused request is no generation
        generated: list[int] = []
        held = None  # the previous cumulative response: sent when the next token comes, or as the final one
        with self.metrics.generating(len(prompt), generated):
            for token in self.engine.generate(prompt, params, cancelled):
                generated.append(token)
                if streaming:
                    if held is not None:
                        sender.send(held)
                    held = self.response(echo + self.decode(generated), None)
        if cancelled():
            pb_utils.Logger.log_info(
                f"tensorrt_llm (llmapi CPU stand-in): request '{request.request_id()}' cancelled after "
                f"{len(generated)} tokens"
            )
            error = pb_utils.TritonError("Request cancelled by client")
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
            return
        stopped_by = next((s for s in stops if generated[-len(s) :] == s), None)
        if stopped_by is not None:
            generated = generated[: -len(stopped_by)]
        reason = "length" if len(generated) >= params.max_tokens and stopped_by is None else "stop"
        sender.send(
            self.response(echo + self.decode(generated), reason if want_reason else None), flags=FINAL
        )

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @staticmethod
    def response(text: str, finish_reason: str | None):
        outputs = [pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
        if finish_reason is not None:
            outputs.append(
                pb_utils.Tensor("finish_reason", np.array([finish_reason.encode()], dtype=np.object_))
            )
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def finalize(self):
        with self.lock:
            for event in self.running.values():
                event.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
