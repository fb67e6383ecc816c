"""`options/<role>.yaml`: the LLM-API options a role's workers load (`--extra-engine-args`), with the
reason for every key as comments."""

from __future__ import annotations

from dynamo_deploy.commands import options_file
from dynamo_deploy.files.context import Deployment
from dynamo_deploy.roles import RoleOptions
from trt_build.build.llmapi_options import flat_keys
from trt_build.build.pytorch import options_yaml


def options_text(role: RoleOptions) -> str:
    lines = [
        f"# LLM-API options of the Dynamo {role.role.role} workers (swallow-trt deploy dynamo); why each key is there:"
    ]
    lines += [f"#   {', '.join(flat_keys(values))}: {reason}" for values, reason in role.reasons]
    return "\n".join(lines) + "\n" + options_yaml(role.options)


def render(deployment: Deployment) -> dict[str, str]:
    return {options_file(r.role.role): options_text(r) for r in deployment.roles}
