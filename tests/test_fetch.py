"""fetch against a local stub of the hub API: the real huggingface_hub client code runs end to end."""

from __future__ import annotations

import json
import shutil
import socket
from collections import namedtuple
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import constants

from tests.hub_stub import RunningHub, StubHub, StubRepo
from trt_build.cli.source import fetch_command as command

SECRET = "hf_testsecretthatmustneverbeprinted"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture()
def tiny_repo_files(tiny_model_dir: Path) -> dict[str, bytes]:
    files = {
        p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file() and p.name != "manifest.json"
    }
    files["README.md"] = b"# tiny"
    files["original/consolidated.00.pth"] = b"pickle"
    return files


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_repo_files: dict[str, bytes]):
    stub = StubHub(
        {
            "tokyotech-llm/tiny-swallow": StubRepo(tiny_repo_files, sha=COMMIT, revisions=("main", "v1")),
            "tokyotech-llm/gated-swallow": StubRepo(tiny_repo_files, gated=True),
            "someone/bin-only": StubRepo({"config.json": b"{}", "pytorch_model.bin": b"pickle"}),
        }
    )
    with RunningHub(stub) as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        monkeypatch.setenv("HF_TOKEN", SECRET)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield stub


def run(*args: str):
    return CliRunner().invoke(command, list(args))


def test_fetch_downloads_only_what_conversion_needs_pinned_to_the_commit(hub, tmp_path, tiny_repo_files):
    out = tmp_path / "models" / "tiny"
    result = run("tokyotech-llm/tiny-swallow", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    fetched = {p.name for p in out.iterdir()}
    assert "README.md" not in fetched and "original" not in fetched
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == tiny_repo_files[name]
    weights = [n for n in tiny_repo_files if n.endswith(".safetensors")]
    assert weights and all((out / n).read_bytes() == tiny_repo_files[n] for n in weights)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["commit"] == COMMIT and manifest["repo_id"] == "tokyotech-llm/tiny-swallow"
    assert {f["name"] for f in manifest["files"]} == fetched - {"manifest.json"}
    assert any(f"/resolve/{COMMIT}/config.json" in r for r in hub.requests)  # downloads pinned to the commit
    assert not list(out.parent.glob(".tiny.*"))  # no staging directory left behind

    before = len(hub.requests)
    again = run("tokyotech-llm/tiny-swallow", "--output", str(out))
    assert again.exit_code == 0 and "already holds" in again.output
    assert len(hub.requests) == before


def test_fetch_a_tag_records_the_resolved_commit(hub, tmp_path):
    out = tmp_path / "tagged"
    assert run("tokyotech-llm/tiny-swallow", "--revision", "v1", "--output", str(out)).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["revision"] == "v1" and manifest["commit"] == COMMIT


def test_gated_repo_says_how_to_get_access(hub, tmp_path):
    out = tmp_path / "gated"
    result = run("tokyotech-llm/gated-swallow", "--output", str(out))
    assert result.exit_code == 1
    assert "gated" in result.output and "accept the license" in result.output and "HF_TOKEN" in result.output
    assert SECRET not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("repo", "revision", "expected"),
    [
        ("tokyotech-llm/no-such-model", None, "was not found"),
        ("tokyotech-llm/tiny-swallow", "v9", "no revision 'v9'"),
    ],
)
def test_missing_repo_or_revision(hub, tmp_path, repo, revision, expected):
    args = [repo, "--output", str(tmp_path / "x")] + (["--revision", revision] if revision else [])
    result = run(*args)
    assert result.exit_code == 1 and expected in result.output


def test_bin_only_repo_is_refused(hub, tmp_path):
    result = run("someone/bin-only", "--output", str(tmp_path / "bin"))
    assert result.exit_code == 1
    assert "pytorch_model.bin" in result.output and "safetensors" in result.output
    assert not any("/resolve/" in r for r in hub.requests)


def test_free_disk_is_checked_before_downloading(hub, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    result = run("tokyotech-llm/tiny-swallow", "--output", str(tmp_path / "full"))
    assert result.exit_code == 1 and "Not enough disk space" in result.output
    assert not any("/resolve/" in r for r in hub.requests)


def test_unreachable_hub(monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = run("tokyotech-llm/tiny-swallow", "--output", str(tmp_path / "x"))
    assert result.exit_code == 1 and "Cannot reach the Hugging Face hub" in result.output
    assert "HF_HUB_OFFLINE=1" in result.output


def test_offline_mode_uses_the_cache_or_says_it_is_missing(hub, tmp_path, monkeypatch, tiny_repo_files):
    from huggingface_hub import snapshot_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = run("tokyotech-llm/tiny-swallow", "--output", str(tmp_path / "offline"))
    assert missing.exit_code == 1 and "not in the Hugging Face cache" in missing.output

    snapshot_download(
        "tokyotech-llm/tiny-swallow", endpoint=hub_url(), local_files_only=False
    )  # fill the cache
    requests = len(hub.requests)
    out = tmp_path / "offline"
    result = run("tokyotech-llm/tiny-swallow", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "config.json").read_bytes() == tiny_repo_files["config.json"]
    assert json.loads((out / "manifest.json").read_text())["commit"] == COMMIT
    assert not (out / "README.md").exists()
    assert len(hub.requests) == requests  # offline: no network at all


def hub_url() -> str:
    import os

    return os.environ["HF_ENDPOINT"]
