"""A Dynamo worker whose engine is the CPU reference engine: run by the Dynamo venv's python.

    python worker.py --model-path HF_DIR --model-name NAME --engine-python TOOLKIT_PY --repo ROOT

It registers the model with Dynamo's runtime as token ids in, token ids out (`register_model(
ModelInput.Tokens, Chat | Completions, ...)`), so the frontend does the chat template, tokenization,
detokenization and the OpenAI API, and serves `dynamo.backend.generate`. Generation runs in a child
process with the toolkit's interpreter (`engine_process.py`: the Dynamo venv has no torch): one JSON
line per request in, one per token out. Only the standard library and Dynamo are imported here.

The request is Dynamo's PreprocessedRequest (`token_ids`, `stop_conditions.max_tokens`,
`stop_conditions.stop_token_ids_hidden`, `eos_token_ids`, `sampling_options`); each response chunk is
`{"token_ids": [...], "finish_reason": None | "stop" | "length" | "error: why"}`, the last with
`completion_usage`, as dynamo/vllm/handlers.py answers. A request the engine refuses raises
`InvalidArgument`, which the frontend answers with a 400 carrying the reason (a "finish_reason" error
becomes a bare 500 "Internal server error").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import sys

import uvloop
from dynamo.llm import ModelInput, ModelRuntimeConfig, ModelType, WorkerType, register_model
from dynamo.llm.exceptions import InvalidArgument
from dynamo.runtime import DistributedRuntime

ENDPOINT = "dynamo.backend.generate"  # the mocker's default: the frontend finds workers by discovery
log = logging.getLogger("swallow_trt.dynamo_worker")


class EngineProcess:
    """The toolkit-venv child that generates; one asyncio queue per running request."""

    def __init__(self, process: asyncio.subprocess.Process, max_seq_len: int):
        self.process, self.max_seq_len = process, max_seq_len
        self.queues: dict[int, asyncio.Queue] = {}
        self.ids = itertools.count()
        self.reader: asyncio.Task | None = None

    @classmethod
    async def start(cls, python: str, repo: str, model_path: str) -> EngineProcess:
        process = await asyncio.create_subprocess_exec(
            python, "-m", "dynamo_deploy.graph.engine_process", model_path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=repo, limit=1 << 20,
        )  # fmt: skip
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            raise SystemExit(
                f"the CPU engine process exited ({await process.wait()}) before loading {model_path}"
            )
        engine = cls(process, int(json.loads(line)["max_seq_len"]))
        engine.reader = asyncio.get_running_loop().create_task(engine.read())
        return engine

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            queue = self.queues.get(message["id"])
            if queue is not None:
                queue.put_nowait(message)
        for queue in self.queues.values():  # the engine died: every open request ends with an error
            queue.put_nowait({"error": "the CPU engine process exited"})
        log.error("the CPU engine process exited (%s)", await self.process.wait())
        os.kill(os.getpid(), signal.SIGTERM)  # a worker without an engine must leave the graph

    def send(self, message: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    async def generate(self, request: dict, context):
        rid = next(self.ids)
        queue: asyncio.Queue = asyncio.Queue()
        self.queues[rid] = queue
        prompt = list(request.get("token_ids") or ())
        stop = request.get("stop_conditions") or {}
        sampling = request.get("sampling_options") or {}
        stop_ids = set(stop.get("stop_token_ids_hidden") or ()) | set(request.get("eos_token_ids") or ())
        if stop.get("ignore_eos"):
            stop_ids = set()
        self.send(
            {
                "id": rid,
                "prompt": prompt,
                "max_tokens": stop.get("max_tokens") or self.max_seq_len - len(prompt),  # unset: to the limit
                "stop_ids": sorted(stop_ids),
                "temperature": sampling.get("temperature"),
                "top_p": sampling.get("top_p"),
                "top_k": sampling.get("top_k"),
                "seed": sampling.get("seed"),
            }
        )
        produced = 0
        try:
            while True:
                message = await queue.get()
                if "token" in message:
                    produced += 1
                    yield {"token_ids": [message["token"]]}
                    if context is not None and context.is_stopped():
                        self.send({"id": rid, "cancel": True})
                    continue
                if "error" in message:
                    if not produced:  # the engine refused the request: a 400 with its reason
                        raise InvalidArgument(message["error"])
                    yield {"token_ids": [], "finish_reason": f"error: {message['error']}"}
                    return
                usage = {
                    "prompt_tokens": len(prompt),
                    "completion_tokens": produced,
                    "total_tokens": len(prompt) + produced,
                }
                yield {"token_ids": [], "finish_reason": message["end"], "completion_usage": usage}
                return
        finally:
            if self.queues.pop(rid, None) is not None and self.process.returncode is None:
                self.send({"id": rid, "cancel": True})  # no-op when it ended; stops it when the client left


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    engine = await EngineProcess.start(args.engine_python, args.repo, args.model_path)
    runtime = DistributedRuntime(
        loop, os.environ.get("DYN_DISCOVERY_BACKEND", "file"), os.environ.get("DYN_REQUEST_PLANE", "tcp")
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.shutdown)
    endpoint = runtime.endpoint(ENDPOINT)
    config = ModelRuntimeConfig()
    config.context_length = engine.max_seq_len
    await register_model(
        ModelInput.Tokens,
        ModelType.Chat | ModelType.Completions,
        endpoint,
        args.model_path,
        args.model_name,
        worker_type=WorkerType.Aggregated,
        runtime_config=config,
    )
    log.info("registered %s (%s) at %s", args.model_name, args.model_path, ENDPOINT)
    try:
        await endpoint.serve_endpoint(engine.generate, graceful_shutdown=True)
    finally:
        if engine.process.returncode is None:
            engine.process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", required=True, help="HF directory: config.json, tokenizer, weights")
    parser.add_argument("--model-name", required=True, help="the name clients ask the frontend for")
    parser.add_argument("--engine-python", required=True, help="the toolkit venv's python (has torch)")
    parser.add_argument("--repo", required=True, help="the swallow-trt source root (engine_process's cwd)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
