"""`k8s/deployment.yaml`: a ConfigMap with the options YAMLs and a `DynamoGraphDeployment` (nvidia.com/v1beta1,
the form the Dynamo operator stores; docs/upstream-2026.md §5.5) that mounts it into every worker.

The checkpoint is read from an existing PersistentVolumeClaim (`--pvc`), copied to its root under the
checkpoint directory's own name; a worker spanning nodes gets `multinode.nodeCount` and the GPUs of one node
per pod.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import yaml

from dynamo_deploy.commands import OPTIONS_DIR, frontend_argv, nodes_per_worker, options_file, worker_argv
from dynamo_deploy.files.context import Deployment
from dynamo_deploy.files.options import options_text

MANIFEST = "k8s/deployment.yaml"
API_VERSION = "nvidia.com/v1beta1"
KIND = "DynamoGraphDeployment"
MODEL_MOUNT = "/models"
CONFIG_MOUNT = "/etc/swallow-trt"
GPU_RESOURCE = "nvidia.com/gpu"
NAME_LENGTH = 32
# role -> (component name, component type): the short names Dynamo's planner looks for (trtllm: prefill,
# decode; aggregated: worker), which also fit Grove's name budget
COMPONENTS = {"agg": ("worker", "worker"), "prefill": ("prefill", "prefill"), "decode": ("decode", "decode")}
# TensorRT-LLM's MPI runs as root in the runtime image (Dynamo's multinode TensorRT-LLM example sets these)
MPI_AS_ROOT = [
    {"name": "OMPI_ALLOW_RUN_AS_ROOT", "value": "1"},
    {"name": "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "value": "1"},
]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the options files in the ConfigMap) as literal blocks, readable as written."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def resource_name(served_model_name: str) -> str:
    """A Kubernetes name: a lowercase RFC 1123 label, at most 32 characters, because Grove fits the graph's,
    the component's and the role's names into 45 together (docs/upstream-2026.md §5.5); a longer name is cut
    and ends with a hash of the whole."""
    slug = re.sub(r"[^a-z0-9]+", "-", served_model_name.lower()).strip("-") or "swallow"
    if len(slug) <= NAME_LENGTH:
        return slug
    digest = hashlib.sha256(served_model_name.encode()).hexdigest()[:6]  # two long names stay apart
    return f"{slug[: NAME_LENGTH - 7].strip('-')}-{digest}"


def _container(image: str, argv: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": image, "command": argv[:1], "args": argv[1:], **extra}


def graph(deployment: Deployment, name: str) -> dict[str, Any]:
    request = deployment.request
    model = f"{MODEL_MOUNT}/{deployment.checkpoint.name}"
    components: list[dict[str, Any]] = [
        {
            "name": "Frontend",
            "type": "frontend",
            "replicas": 1,
            "podTemplate": {
                "spec": {
                    "containers": [
                        _container(request.image, frontend_argv(request.router, str(request.http_port)))
                    ]
                }
            },
        }
    ]
    multinode = False
    for r in deployment.roles:
        role = r.role
        component, kind = COMPONENTS[role.role]
        nodes = nodes_per_worker(role, request.gpus_per_node)
        multinode |= nodes > 1
        argv = worker_argv(
            role,
            model,
            request.model_name,
            f"{CONFIG_MOUNT}/{options_file(role.role)}",
            request.router,
            request.gpus_per_node,
        )
        container = _container(
            request.image,
            argv,
            resources={"limits": {GPU_RESOURCE: str(role.gpus_per_worker // nodes)}},
            volumeMounts=[
                {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True},
                {"name": "options", "mountPath": f"{CONFIG_MOUNT}/{OPTIONS_DIR}", "readOnly": True},
            ],
        )
        entry: dict[str, Any] = {"name": component, "type": kind, "replicas": role.workers}
        if nodes > 1:
            entry["multinode"] = {"nodeCount": nodes}
        entry["podTemplate"] = {
            "spec": {
                "containers": [container],
                "volumes": [
                    {"name": "model", "persistentVolumeClaim": {"claimName": request.pvc, "readOnly": True}},
                    {"name": "options", "configMap": {"name": f"{name}-options"}},
                ],
            }
        }
        components.append(entry)
    spec: dict[str, Any] = {"backendFramework": "trtllm", "components": components}
    if multinode:
        spec["env"] = MPI_AS_ROOT
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


def config_map(deployment: Deployment, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-options"},
        "data": {f"{r.role.role}.yaml": options_text(r) for r in deployment.roles},
    }


def render(deployment: Deployment) -> dict[str, str]:
    name = resource_name(deployment.request.model_name)
    header = (
        "# Dynamo on Kubernetes (swallow-trt deploy dynamo; see ../manifest.json): kubectl apply -f deployment.yaml\n"
        f"# Needs the Dynamo operator, and the checkpoint copied to the root of PVC {deployment.request.pvc!r} as "
        f"{deployment.checkpoint.name}/.\n"
    )
    documents = [config_map(deployment, name), graph(deployment, name)]
    return {
        MANIFEST: header
        + yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    }
