"""`swallow-trt deploy dynamo`: a Dynamo deployment directory for a Hugging Face / ModelOpt checkpoint.

  options/<role>.yaml    LLM-API options per worker role (roles.py)
  local/launch.sh        the graph on one GPU host            (files/local.py)
  k8s/deployment.yaml    ConfigMap + DynamoGraphDeployment    (files/k8s.py)
  slurm/dynamo.sbatch    the graph on a Slurm allocation      (files/slurm.py)
  manifest.json          what made it, with the `deployment` block `serve --dynamo` reads (spec.py)
Everything is checked before anything is written, and the directory appears whole or not at all.
"""

from __future__ import annotations

import os

from dynamo_deploy.commands import options_file, place
from dynamo_deploy.files import k8s, local, options, slurm
from dynamo_deploy.files.context import Deployment
from dynamo_deploy.request import DeployRequest
from dynamo_deploy.roles import compose_roles
from dynamo_deploy.spec import ROUTERS, DynamoDeployment, WorkerRole
from trt_build.build.choice import refuse_other_checkpoint
from trt_build.build.llmapi_options import flat_keys
from trt_build.build.pytorch import checkpoint_facts, read_pytorch_checkpoint
from trt_build.common.console import say
from trt_build.common.errors import SwallowTrtError
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir, check_output
from trt_build.source.hf_config import read_hf_config
from trt_build.source.tokenizer import FAST_TOKENIZER_FILES

RENDERERS = (options.render, local.render, k8s.render, slurm.render)
EXECUTABLE = (local.LAUNCH, slurm.SBATCH)


def plan_deployment(request: DeployRequest) -> tuple[Deployment, list[str]]:
    """The deployment `request` asks for, and its warnings; refused (SwallowTrtError) when it cannot run."""
    if request.router not in ROUTERS:
        raise SwallowTrtError(f"router {request.router!r} is not one of {', '.join(ROUTERS)}.")
    kind = read_pytorch_checkpoint(request.checkpoint)
    if request.choice is not None:
        refuse_other_checkpoint(request.choice, kind.quant_algo, kind.kv_cache_quant_algo)
    arch = read_hf_config(request.checkpoint)
    roles, refusals, warnings = compose_roles(request, arch, kind)
    if refusals:
        raise SwallowTrtError(" ".join(refusals))
    deployment = Deployment(
        request=request,
        roles=roles,
        placements=place(request.roles, request.gpus_per_node),
        checkpoint=request.checkpoint.resolve(),
        output=request.output.resolve(),
        kind=kind,
    )
    return deployment, warnings


def render(deployment: Deployment) -> dict[str, str]:
    """Every file of the directory but the manifest: relative path -> text."""
    files: dict[str, str] = {}
    for renderer in RENDERERS:
        files.update(renderer(deployment))
    return files


def spec_of(deployment: Deployment) -> DynamoDeployment:
    request = deployment.request
    return DynamoDeployment(
        checkpoint=str(deployment.checkpoint),
        served_model_name=request.model_name,
        mode=request.mode,
        router=request.router,
        roles=tuple(WorkerRole(r.role, r.workers, r.tp, r.pp, options_file(r.role)) for r in request.roles),
        gpu=request.gpu.name,
        gpus_per_node=request.gpus_per_node,
        image=request.image,
    )


def dry_run_text(deployment: Deployment, files: dict[str, str], warnings: list[str]) -> str:
    """What --dry-run prints: the files it would write and every role's options with their reasons."""
    lines = [f"Would write {deployment.output} ({deployment.request.mode}, {deployment.nodes} node(s)):"]
    lines += [f"  {name}" for name in sorted(files)]
    for role in deployment.roles:
        lines.append(f"{options_file(role.role.role)}:")
        lines += [f"  {', '.join(flat_keys(values))}: {reason}" for values, reason in role.reasons]
    lines += [f"WARNING: {warning}" for warning in warnings]
    return "\n".join(lines)


def deploy_dynamo(request: DeployRequest, overwrite: bool = False, dry_run: bool = False) -> str:
    """Write the deployment directory (with `dry_run`, only say what it would be); returns what to print."""
    deployment, warnings = plan_deployment(request)
    files = render(deployment)
    if dry_run:
        return dry_run_text(deployment, files, warnings)
    check_output(request.output, overwrite, [deployment.checkpoint])
    for warning in warnings:
        say(f"Warning: {warning}", err=True)
    if not all((deployment.checkpoint / name).is_file() for name in FAST_TOKENIZER_FILES):
        say(
            f"Warning: {deployment.checkpoint} has no tokenizer.json/tokenizer_config.json; Dynamo's frontend and "
            "workers load the tokenizer from the checkpoint directory: copy it there.",
            err=True,
        )
    with atomic_output_dir(request.output, overwrite, [deployment.checkpoint]) as tmp:
        for name, text in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if name in EXECUTABLE:
                os.chmod(path, 0o755)
        write_manifest(
            tmp,
            "deploy",
            target="dynamo",
            deployment=spec_of(deployment).to_dict(),
            files=sorted(files),
            nodes=deployment.nodes,
            total_gpus=request.total_gpus,
            role_options={
                r.role.role: {
                    "options": r.options,
                    "reasons": [{"options": values, "reason": reason} for values, reason in r.reasons],
                }
                for r in deployment.roles
            },
            warnings=warnings,
            gpu_profile=request.gpu.as_dict(),
            checkpoint=checkpoint_facts(deployment.checkpoint, deployment.kind),
            choice=request.choice.to_dict() if request.choice else None,
        )
    return (
        f"Dynamo deployment written to {request.output} ({request.mode}, {request.total_gpus} GPUs on "
        f"{deployment.nodes} node(s)).\n"
        f"  this host:  {request.output / local.LAUNCH}\n"
        f"  Kubernetes: kubectl apply -f {request.output / k8s.MANIFEST}\n"
        f"  Slurm:      sbatch {request.output / slurm.SBATCH}"
    )
