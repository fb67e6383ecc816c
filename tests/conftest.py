"""Shared fixtures: the offline Llama 3.1 tokenizer and tiny Swallow-architecture models."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from trt_build.source.tiny_model import write_tiny_model
from trt_build.source.tokenizer import ensure_tokenizer


def gpu_available() -> bool:
    return shutil.which("nvidia-smi") is not None and importlib.util.find_spec("tensorrt_llm") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Longest first, so pytest-xdist (`make test`, files in this order) ends its workers together: the peer
    # and predictor tests (building their venvs takes minutes on a fresh clone), then files with slow tests,
    # then the rest.
    slow_files = {item.path for item in items if "slow" in item.keywords}
    own_venv = {"peer", "predictor"}
    items.sort(key=lambda item: (not own_venv & set(item.keywords), item.path not in slow_files))
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (nvidia-smi) and tensorrt_llm; run on a GPU host")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return ensure_tokenizer()


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A tiny Swallow model (2 layers, hidden 64, 8 heads over 2 KV heads); treat it as read-only."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-swallow", seed=0)
