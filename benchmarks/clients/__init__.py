"""Streaming clients, one module per protocol; `CLIENTS` maps the --protocol name to its class."""

from __future__ import annotations

from benchmarks.clients.base import ClientOptions, StreamClient
from benchmarks.clients.openai_api import OpenAIClient
from benchmarks.clients.triton_grpc import TritonGrpcClient
from benchmarks.clients.triton_http import TritonHttpClient

CLIENTS: dict[str, type[StreamClient]] = {
    "grpc": TritonGrpcClient,
    "http": TritonHttpClient,
    "openai": OpenAIClient,
}

__all__ = ["CLIENTS", "ClientOptions", "StreamClient"]
