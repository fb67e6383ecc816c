"""The CPU reference engine as a child process of a Dynamo worker, spoken to in JSON lines.

Why a process: the Dynamo venv has no torch (and the toolkit venv has no Dynamo), so the worker
(`worker.py`, Dynamo venv) starts `python -m dynamo_deploy.graph.engine_process MODEL_DIR` with the
toolkit's interpreter and talks to it over stdin/stdout. Each line is one JSON object:

  in:  {"id": N, "prompt": [ids], "max_tokens": M, "stop_ids": [ids], "temperature": T, "top_p": P,
        "top_k": K, "seed": S}          start request N
       {"id": N, "cancel": true}        stop request N (the client went away)
  out: {"ready": true, "max_seq_len": L}   once the weights are loaded
       {"id": N, "token": t}            one generated token (a stop id ends the request unsent)
       {"id": N, "end": "stop"|"length"|"cancelled"}
       {"id": N, "error": "why"}        the request could not run (RequestError's message)

Requests run concurrently, one thread each (CpuEngine interleaves their steps). The process exits when
its stdin closes, so it never outlives its worker. Each request's end goes to stderr (the worker's log):
`request N: stop|length|cancelled|refused (...) after K tokens`.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from triton_repo.models.cpu_engine import CpuEngine, RequestError, SamplingParams, load_model

MAX_SEQ_LEN = 8192  # as the CPU engine's Triton repository defaults (`repo --max-seq-len`)


class Engine:
    def __init__(self, model_dir: Path, out=sys.stdout):
        model = load_model(model_dir)
        limit = min(MAX_SEQ_LEN, int(getattr(model.config, "max_position_embeddings", MAX_SEQ_LEN)))
        self.engine = CpuEngine(model, max_input_len=limit - 1, max_seq_len=limit)
        self.out, self.write_lock = out, threading.Lock()
        self.cancelled: set[int] = set()

    def send(self, message: dict) -> None:
        with self.write_lock:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()

    def run(self, request: dict) -> None:
        rid = request["id"]
        stop_ids = set(request.get("stop_ids") or ())
        params = SamplingParams(
            max_tokens=int(request["max_tokens"]),
            temperature=request.get("temperature"),
            top_p=request.get("top_p"),
            top_k=request.get("top_k"),
            seed=request.get("seed"),
            stop_words=[[token] for token in sorted(stop_ids)],
        )
        end, sent = "length", 0
        try:
            for token in self.engine.generate(request["prompt"], params, lambda: rid in self.cancelled):
                if token in stop_ids:
                    end = "stop"
                    break
                self.send({"id": rid, "token": token})
                sent += 1
            if rid in self.cancelled:
                end = "cancelled"
            self.send({"id": rid, "end": end})
        except RequestError as error:
            end = f"refused ({error})"
            self.send({"id": rid, "error": str(error)})
        finally:
            self.cancelled.discard(rid)
            print(
                f"request {rid}: {end} after {sent} tokens", file=sys.stderr, flush=True
            )  # the worker's log

    def serve(self, lines) -> None:
        self.send({"ready": True, "max_seq_len": self.engine.max_seq_len})
        for line in lines:
            request = json.loads(line)
            if request.get("cancel"):
                self.cancelled.add(request["id"])
            else:
                threading.Thread(target=self.run, args=(request,), daemon=True).start()


def main() -> None:
    Engine(Path(sys.argv[1])).serve(sys.stdin)


if __name__ == "__main__":
    main()
