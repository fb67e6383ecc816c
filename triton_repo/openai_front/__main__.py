"""`python -m triton_repo.openai_front --grpc-url HOST:PORT`: the OpenAI API for a running tritonserver."""

from __future__ import annotations

import argparse
import sys

from triton_repo.openai_front.server import run_openai_front
from triton_repo.openai_front.settings import DEFAULT_PORT, FRONT_MODELS, OpenAIFrontSettings
from trt_build.common.errors import SwallowTrtError


def parse(argv: list[str] | None = None) -> OpenAIFrontSettings:
    parser = argparse.ArgumentParser(prog="python -m triton_repo.openai_front", description=__doc__)
    parser.add_argument("--grpc-url", default="127.0.0.1:8001", help="tritonserver's gRPC host:port.")
    parser.add_argument("--front-model", help=f"Triton model to call [the first ready of {FRONT_MODELS}].")
    parser.add_argument("--served-model-name", help="Model name clients use [the front model's name].")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--default-max-tokens", type=int, default=1024, help="When a request sets none.")
    args = parser.parse_args(argv)
    return OpenAIFrontSettings(
        grpc_url=args.grpc_url,
        front_model=args.front_model,
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        default_max_tokens=args.default_max_tokens,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        run_openai_front(parse(argv))
    except SwallowTrtError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
