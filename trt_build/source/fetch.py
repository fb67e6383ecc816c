"""`swallow-trt fetch`: download what a conversion needs from the Hugging Face hub, pinned to a commit.

Only safetensors weights, configs, tokenizer files and the generation config are fetched (never
pickled .bin weights, never code). The revision is resolved to its commit first and the download is
pinned to it, so the manifest names exactly the files on disk. Downloads go to a staging directory
beside the output (kept on failure, so running again resumes: huggingface_hub skips finished files and
resumes partial ones) and are renamed into place when complete. The token comes from huggingface_hub's
usual places (HF_TOKEN, the `hf auth login` cache) and is never printed. HF_HUB_OFFLINE=1 copies the
model from the local HF cache instead, or says clearly that it is not there.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path
from typing import Any

import click

from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.manifest import write_manifest
from trt_build.source.registry import lookup
from trt_build.source.tokenizer import GENERATION_CONFIG, TOKENIZER_FILES

ALLOW_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    GENERATION_CONFIG,
    *TOKENIZER_FILES,
    "*.tiktoken",
]
BIN_WEIGHT_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt"]
DISK_MARGIN = 1.02  # 2 % headroom over the files' sizes (filesystem blocks, metadata)
TRUE_VALUES = {"1", "on", "yes", "true"}


def hub_endpoint() -> str | None:
    """HF_ENDPOINT read now (huggingface_hub reads it once at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def offline_mode() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return (flag or "").strip().lower() in TRUE_VALUES if flag is not None else constants.HF_HUB_OFFLINE


def wanted(filename: str) -> bool:
    return any(fnmatch.fnmatch(filename, pattern) for pattern in ALLOW_PATTERNS)


def resolve_repo_id(name: str) -> str:
    known = lookup(name)
    if known is not None:
        return known.hub_id
    if name.count("/") != 1:
        raise click.ClickException(
            f"{name!r} is not a hub id (organisation/name) nor a known Swallow model (`swallow-trt models`)."
        )
    return name


def hub_error(error: Exception, repo_id: str, revision: str | None) -> click.ClickException:
    """A ClickException saying what went wrong with the hub and what to do next."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hub_endpoint() or "https://huggingface.co"
    if isinstance(error, GatedRepoError):
        return click.ClickException(
            f"{repo_id} is a gated repository and this account has no access yet. Open {endpoint}/{repo_id}, "
            "accept the license while logged in, then give a token of that account: export HF_TOKEN=hf_... "
            "(or run `hf auth login`), and fetch again."
        )
    if isinstance(error, RevisionNotFoundError):
        return click.ClickException(
            f"{repo_id} has no revision {revision!r}. Check the branch, tag or commit on {endpoint}/{repo_id}."
        )
    if isinstance(error, RepositoryNotFoundError):
        return click.ClickException(
            f"{repo_id} was not found on {endpoint} (or it is private and no valid token was given). Check the id "
            "(`swallow-trt models` lists the Swallow ones); for a private repo export HF_TOKEN=hf_..."
        )
    if isinstance(
        error, (httpx2.TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError, ConnectionError)
    ):
        return click.ClickException(
            f"Cannot reach the Hugging Face hub at {endpoint} ({type(error).__name__}). Check the network or "
            "proxy (HTTPS_PROXY), or set HF_ENDPOINT to a mirror; with the model already in the HF cache, "
            "set HF_HUB_OFFLINE=1 to use it."
        )
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        hint = "check HF_TOKEN" if status in (401, 403) else "the hub may be down; try again later"
        return click.ClickException(f"The hub answered HTTP {status} for {repo_id}: {hint}.")
    return click.ClickException(f"Fetching {repo_id} failed: {type(error).__name__}: {error}")


def _staging_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.download"


def _present_bytes(staging: Path, sizes: dict[str, int]) -> int:
    """Bytes of files already complete in the staging dir (a resumed download needs only the rest)."""
    return sum(
        size
        for name, size in sizes.items()
        if (staging / name).is_file() and (staging / name).stat().st_size == size
    )


def check_disk(output: Path, sizes: dict[str, int]) -> None:
    staging = _staging_dir(output)
    needed = int((sum(sizes.values()) - _present_bytes(staging, sizes)) * DISK_MARGIN)
    probe = output.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise click.ClickException(
            f"Not enough disk space: the files to fetch need {needed / 1e9:.2f} GB and {probe} has "
            f"{free / 1e9:.2f} GB free. Free some space or pass --output on a larger disk. Nothing was downloaded."
        )


def _already_fetched(output: Path, repo_id: str, revision: str | None) -> dict[str, Any] | None:
    import json

    manifest = output / "manifest.json"
    if not manifest.is_file():
        return None
    recorded = json.loads(manifest.read_text())
    same_repo = recorded.get("stage") == "fetch" and recorded.get("repo_id") == repo_id
    same_revision = revision in (None, recorded.get("revision"), recorded.get("commit"))
    return recorded if same_repo and same_revision else None


def _finish(staging: Path, output: Path, overwrite: bool, **fields: Any) -> None:
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
    write_manifest(staging, "fetch", **fields)
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, output)


def fetch_online(repo_id: str, revision: str | None, output: Path, overwrite: bool) -> str:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=hub_endpoint())
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as error:  # noqa: BLE001 - every hub failure becomes an actionable message
        raise hub_error(error, repo_id, revision) from None
    siblings = info.siblings or []
    names = [s.rfilename for s in siblings]
    if not any(n.endswith(".safetensors") for n in names):
        bins = [n for n in names if any(fnmatch.fnmatch(n, p) for p in BIN_WEIGHT_PATTERNS)]
        what = f"only PyTorch pickle weights ({', '.join(bins[:3])})" if bins else "no weight files"
        raise click.ClickException(
            f"{repo_id}@{info.sha} has {what}. swallow-trt loads safetensors only (a pickle can run code). "
            "Use a revision or repo with *.safetensors, or convert the weights to safetensors yourself first."
        )
    if "config.json" not in names:
        raise click.ClickException(
            f"{repo_id}@{info.sha} has no config.json; is it a transformers model repo?"
        )
    sizes = {s.rfilename: int(s.size or 0) for s in siblings if wanted(s.rfilename)}
    check_disk(output, sizes)
    staging = _staging_dir(output)
    click.echo(
        f"Fetching {len(sizes)} files ({sum(sizes.values()) / 1e9:.2f} GB) of {repo_id}@{info.sha} ...",
        err=True,
    )
    try:
        snapshot_download(
            repo_id,
            revision=info.sha,  # pinned: the manifest's commit is what lands on disk
            local_dir=staging,
            allow_patterns=ALLOW_PATTERNS,
            endpoint=hub_endpoint(),
        )
    except Exception as error:  # noqa: BLE001
        raise hub_error(error, repo_id, revision) from None
    missing = [name for name, size in sizes.items() if not (staging / name).is_file()]
    if missing:
        raise click.ClickException(
            f"Download incomplete ({', '.join(missing[:3])} missing); run fetch again to resume."
        )
    lfs = {s.rfilename: s.lfs.sha256 for s in siblings if wanted(s.rfilename) and s.lfs is not None}
    files = [
        {"name": n, "bytes": sizes[n], **({"sha256": lfs[n]} if n in lfs else {})} for n in sorted(sizes)
    ]
    _finish(
        staging,
        output,
        overwrite,
        repo_id=repo_id,
        revision=revision,
        commit=info.sha,
        files=files,
        source="hub",
    )
    return info.sha


def fetch_offline(repo_id: str, revision: str | None, output: Path, overwrite: bool) -> str:
    """HF_HUB_OFFLINE: copy (hard-link where possible) the cached snapshot into the output directory."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        cached = Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS, local_files_only=True
            )
        )
    except LocalEntryNotFoundError:
        raise click.ClickException(
            f"HF_HUB_OFFLINE is set and {repo_id}@{revision or 'main'} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}). Fetch it once with network access (unset HF_HUB_OFFLINE), or copy "
            "the model directory to this machine and pass that directory as the model."
        ) from None
    files = sorted(p for p in cached.rglob("*") if p.is_file() and wanted(p.name))
    if not any(p.suffix == ".safetensors" for p in files):
        raise click.ClickException(f"The cached snapshot {cached} has no *.safetensors files.")
    sizes = {str(p.relative_to(cached)): p.stat().st_size for p in files}
    check_disk(output, sizes)
    staging = _staging_dir(output)
    for path in files:
        target = staging / path.relative_to(cached)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path.resolve(), target)
        except OSError:
            shutil.copy2(path.resolve(), target)
    commit = cached.name
    entries = [{"name": name, "bytes": size} for name, size in sizes.items()]
    _finish(
        staging,
        output,
        overwrite,
        repo_id=repo_id,
        revision=revision,
        commit=commit,
        files=entries,
        source="hf-cache",
    )
    return commit


def fetch(
    model: str, revision: str | None = None, output: Path | None = None, overwrite: bool = False
) -> Path:
    """Fetch `model` into `output` (default models/<name>) and return the directory."""
    repo_id = resolve_repo_id(model)
    output = Path(output or Path("models") / repo_id.split("/", 1)[1])
    recorded = _already_fetched(output, repo_id, revision)
    if recorded and not overwrite:
        click.echo(f"{output} already holds {repo_id}@{recorded.get('commit')}; nothing to do.", err=True)
        return output
    if output.exists() and not overwrite:
        raise click.ClickException(
            f"{output} already exists and holds something else. Pass --overwrite to replace it."
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    commit = (fetch_offline if offline_mode() else fetch_online)(repo_id, revision, output, overwrite)
    click.echo(f"Fetched {repo_id}@{commit} into {output}", err=True)
    return output


@click.command(cls=SwallowTrtCommand)
@click.argument("model_id")
@click.option("--revision", default=None, help="Branch, tag or commit [default: main]; recorded as a commit.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="[default: models/<name>]")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def command(model_id: str, revision: str | None, output: Path | None, overwrite: bool) -> None:
    """Download a model's safetensors, configs and tokenizer from the Hugging Face hub (pinned commit).

    Prints the output directory on stdout. Honours HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE.
    """
    click.echo(fetch(model_id, revision, output, overwrite))
