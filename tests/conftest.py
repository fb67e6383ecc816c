"""Shared fixtures: the offline Llama 3.1 tokenizer and tiny Swallow-architecture models."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from trt_build.source.tiny_model import write_tiny_model
from trt_build.source.tokenizer import ensure_tokenizer


def gpu_available() -> bool:
    return shutil.which("nvidia-smi") is not None and importlib.util.find_spec("tensorrt_llm") is not None


# The files that call the shared servers (cycle_triton, chain_triton below): `make test` runs them on one
# pytest-xdist worker, so that each server starts once. Collection refuses any other file that calls them.
SERVED_FILES = (
    "tests/test_client_isolation.py",
    "tests/test_conform.py",
    "tests/test_front_exactness.py",
    "tests/test_triton_repo_serving.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, with SERVED_FILES one unit of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ServedTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "served" if file in SERVED_FILES else file

    return ServedTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Longest first, so pytest-xdist (`make test`, files in this order) ends its workers together: files that
    # build a venv of their own (ModelOpt peer, predictor, Dynamo: minutes on a fresh clone), then files with
    # slow tests, then the rest.
    slow_files = {item.path for item in items if "slow" in item.keywords}
    own_venv = {item.path for item in items if {"peer", "predictor"} & set(item.keywords)}
    own_venv |= {item.path for item in items if "dynamo_env" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: (item.path not in own_venv, item.path not in slow_files))
    root = Path(__file__).parents[1]
    for item in items:
        uses = {"cycle_triton", "chain_triton"} & set(getattr(item, "fixturenames", ()))
        if uses and item.path.relative_to(root).as_posix() not in SERVED_FILES:
            raise pytest.UsageError(
                f"{item.nodeid} calls {', '.join(uses)}: add its file to SERVED_FILES (tests/conftest.py)"
            )
    missing = {
        "gpu": not gpu_available() and "needs an NVIDIA GPU (nvidia-smi) and tensorrt_llm; run on a GPU host",
        "cuda": not torch.cuda.is_available() and "needs a CUDA device that torch sees; run on a GPU host",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def dynamo_env() -> Path:
    """Build the Dynamo venv (`make dynamo-env`: idempotent, minutes on a fresh clone) or fail loudly; its
    python. A lock keeps two pytest-xdist workers from building it at once."""
    import fcntl
    import os
    import subprocess

    from dynamo_deploy.graph.environment import DYNAMO_VENV_ENV, ROOT, dynamo_python

    venv = os.environ.get(DYNAMO_VENV_ENV)
    with open(ROOT / ".dynamo-env.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = subprocess.run(
            ["make", "-s", "dynamo-env", *([f"DYNAMO_VENV={venv}"] if venv else [])],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
    assert built.returncode == 0, (
        f"make dynamo-env failed (the Dynamo tests cannot run):\n{built.stderr[-3000:]}"
    )
    return dynamo_python()


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return ensure_tokenizer()


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def builtin_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """verify's 8 built-in texts as a --prompts file (JSONL with languages): a quantized checkpoint is otherwise
    verified on the 34 held-out texts, which one test per target runs."""
    from trt_build.verify.texts import BUILTIN_TEXTS

    path = tmp_path_factory.mktemp("prompts") / "builtin.jsonl"
    rows = [json.dumps({"language": language, "text": text}) for language, text in BUILTIN_TEXTS]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A tiny Swallow model (2 layers, hidden 64, 8 heads over 2 KV heads); treat it as read-only."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-swallow", seed=0)


# One tritonserver per served model, shared by SERVED_FILES (each start costs five Python-backend stubs
# importing transformers): tests leave them serving, which is what they test.
@pytest.fixture(scope="session")
def cycle_triton(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tokenizer):
    from tests.served_models import cycle_server

    with cycle_server(tmp_path_factory.mktemp("cycle"), tiny_model_dir, tokenizer) as running:
        yield running


@pytest.fixture(scope="session")
def chain_triton(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path):
    from tests.served_models import chain_server

    with chain_server(tmp_path_factory.mktemp("chain")) as running:
        yield running
