"""A chosen deployment: the configuration `plan --slo` picks, which `build --target pytorch` and
`deploy dynamo` carry out, so the numbers the plan predicted are the numbers that get deployed.

It is written as JSON (`plan ... --save choice.json`) and read back with `load_choice`. CUDA-graph batch sizes
are not stored: they follow from `max_batch_size` (`build/llmapi_options.cuda_graph_batch_sizes`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError

ROLES = ("agg", "prefill", "decode")  # one aggregated role, or a prefill and a decode role
# The keys of `DeploymentChoice.predicted`, each an estimate for the whole deployment at its batch:
PREDICTED_METRICS = {
    "ttft_ms": "time to first token, ms",
    "tpot_ms": "time per output token after the first (ITL), ms",
    "tokens_per_s_per_user": "output tokens/s one request sees (1000 / tpot_ms)",
    "tokens_per_s_per_gpu": "output tokens/s of the deployment divided by its GPUs",
    "tokens_per_s": "output tokens/s of the whole deployment",
    "requests_per_s": "completed requests/s of the whole deployment",
    "concurrency": "requests in flight that achieve it (the batch, over all replicas)",
}


@dataclass(frozen=True)
class RoleChoice:
    """One kind of worker: how many there are, how each is split over GPUs and what its scheduler holds."""

    role: str  # agg | prefill | decode
    workers: int  # replicas of this role
    tp: int
    pp: int
    max_batch_size: int
    max_num_tokens: int

    @property
    def gpus_per_worker(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.workers * self.gpus_per_worker


@dataclass(frozen=True)
class DeploymentChoice:
    """What to deploy: the model and format, the GPU, the KV share, the roles; and what was predicted for it."""

    model: str  # registry id, short name or directory, as given to `plan --model`
    gpu: str  # a GPU profile name (trt_build/common/gpus.py)
    quant: str  # a --quant value (trt_build/quant/schemes.py)
    kv_cache_dtype: str  # a --kv-cache-dtype value
    max_seq_len: int
    kv_cache_free_gpu_memory_fraction: float  # the share the options write AND the predictor modelled
    roles: tuple[RoleChoice, ...]
    isl: int | None = None  # the traffic it was chosen for, in tokens
    osl: int | None = None
    predicted: dict[str, float] = field(default_factory=dict)  # PREDICTED_METRICS key -> estimate
    predictor: dict[str, str] = field(default_factory=dict)  # name, version, data version, margin

    @property
    def mode(self) -> str:
        return "disagg" if any(r.role != "agg" for r in self.roles) else "agg"

    @property
    def total_gpus(self) -> int:
        return sum(r.gpus for r in self.roles)

    def role(self, name: str) -> RoleChoice:
        return next(r for r in self.roles if r.role == name)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mode": self.mode, "total_gpus": self.total_gpus}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_roles(roles: tuple[RoleChoice, ...], where: str) -> None:
    names = sorted(r.role for r in roles)
    if names not in (["agg"], ["decode", "prefill"]):
        raise SwallowTrtError(
            f"{where}: roles {names} are neither one 'agg' role nor one 'prefill' and one 'decode' role.",
            "Write the choice again with `swallow-trt plan ... --save`.",
        )
    for r in roles:
        numbers = (r.workers, r.tp, r.pp, r.max_batch_size, r.max_num_tokens)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in numbers):
            raise SwallowTrtError(
                f"{where}: role {r.role!r} has workers, tp, pp, max_batch_size and max_num_tokens {numbers}; "
                "each must be a positive integer.",
                "Write the choice again with `swallow-trt plan ... --save`.",
            )


def choice_from_dict(data: Any, where: str = "the deployment choice") -> DeploymentChoice:
    """Read a choice back from its JSON form, refusing anything malformed with what is wrong."""
    fix = "Write it again with `swallow-trt plan ... --save`."
    if not isinstance(data, dict):
        raise SwallowTrtError(f"{where} is not a JSON object.", fix)
    names = {f for f in DeploymentChoice.__dataclass_fields__}
    missing = sorted(n for n in names - {"isl", "osl", "predicted", "predictor"} if n not in data)
    if missing:
        raise SwallowTrtError(f"{where} lacks {', '.join(missing)}.", fix)
    try:
        roles = tuple(RoleChoice(**role) for role in data["roles"])
        fraction = float(data["kv_cache_free_gpu_memory_fraction"])
        choice = DeploymentChoice(
            **{k: v for k, v in data.items() if k in names and k != "roles"} | {"roles": roles}
        )
    except (TypeError, ValueError) as error:
        raise SwallowTrtError(f"{where} is malformed ({error}).", fix) from None
    if not 0 < fraction < 1:
        raise SwallowTrtError(f"{where}: kv_cache_free_gpu_memory_fraction {fraction} is not in (0, 1).", fix)
    _check_roles(roles, where)
    return choice


def load_choice(path: Path) -> DeploymentChoice:
    """The choice saved at `path` (`plan ... --save`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SwallowTrtError(
            f"{path} does not exist.", "Write it with `swallow-trt plan ... --save`."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SwallowTrtError(
            f"{path} is not a readable JSON file ({error}).",
            "Write it again with `swallow-trt plan ... --save`.",
        ) from None
    return choice_from_dict(data, str(path))
