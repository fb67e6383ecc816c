"""Check a `deploy dynamo` directory with ai-dynamo 1.6.1's own code; runs in the Dynamo venv (Python 3.10).

  - k8s/deployment.yaml's DynamoGraphDeployment loads into the wheel's typed v1beta1 model
    (`dynamo.profiler.utils.config.Config`); its prefill and decode components carry the names Dynamo's
    planner looks for (`WORKER_COMPONENT_NAMES`); Dynamo's own placement rule (`set_multinode_config`, which
    reads TP x PP from the worker's arguments) gives every worker the multinode block we wrote;
  - every component's `podTemplate` and the ConfigMap survive a round trip through the Kubernetes client's
    own types (V1PodTemplateSpec, which the CRD embeds, and V1ConfigMap): a misspelt or misplaced key is
    dropped on the way and so caught;
  - every worker's arguments parse with `dynamo.trtllm`'s argument parser, and the frontend's with
    `dynamo.frontend`'s. The worker parser takes only its defaults from `tensorrt_llm`, which cannot be
    installed here: a stub module supplies them (None). The typed model imports two tables from
    `dynamo.planner.config`; the `dynamo.planner` package's __init__ (the planner engine, which needs
    scikit-learn and aisimulate) is skipped by registering the package without running it.
Usage: dynamo_dgd_check.py GPUS_PER_NODE DEPLOY_DIR... Prints one JSON object (what was checked per
directory, and the problems) and exits 1 when any check fails.
"""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path

import yaml


def stub_tensorrt_llm() -> None:
    class BaseLlmArgs:  # what dynamo/trtllm/backend_args.py reads: model_fields[name].default
        model_fields = {
            name: types.SimpleNamespace(default=None)
            for name in ("max_batch_size", "max_num_tokens", "max_seq_len", "max_beam_width")
        }

    root, llmapi, llm_args = (
        types.ModuleType(n) for n in ("tensorrt_llm", "tensorrt_llm.llmapi", "tensorrt_llm.llmapi.llm_args")
    )
    llm_args.BaseLlmArgs = BaseLlmArgs
    root.llmapi, llmapi.llm_args = llmapi, llm_args
    sys.modules.update({m.__name__: m for m in (root, llmapi, llm_args)})


def planner_tables_only() -> None:
    import dynamo

    package = types.ModuleType("dynamo.planner")
    package.__path__ = [f"{path}/planner" for path in dynamo.__path__]
    sys.modules["dynamo.planner"] = package


def kubernetes_round_trip(value: dict, kind: str) -> bool:
    """Whether `value` reads into the Kubernetes client's `kind` and writes back unchanged."""
    from kubernetes.client import ApiClient

    class Response:  # what ApiClient.deserialize reads
        data = json.dumps(value)

    api = ApiClient()
    return api.sanitize_for_serialization(api.deserialize(Response(), kind)) == value


def check(deploy: Path, gpus_per_node: int, problems: list[str]) -> dict:
    from dynamo.frontend.main import parse_args as frontend_parse_args
    from dynamo.planner.config.backend_components import WORKER_COMPONENT_NAMES
    from dynamo.profiler.utils.config import Config, get_main_container, set_multinode_config
    from dynamo.trtllm.args import parse_args as worker_parse_args

    documents = list(yaml.safe_load_all((deploy / "k8s" / "deployment.yaml").read_text()))
    graph = next(d for d in documents if d["kind"] == "DynamoGraphDeployment")
    for document in documents:
        if document["kind"] == "ConfigMap" and not kubernetes_round_trip(document, "V1ConfigMap"):
            problems.append(f"{deploy.name}: the ConfigMap is not a Kubernetes V1ConfigMap")
    for component in graph["spec"]["components"]:
        if not kubernetes_round_trip(component["podTemplate"], "V1PodTemplateSpec"):
            problems.append(
                f"{deploy.name} {component['name']}: podTemplate is not a Kubernetes V1PodTemplateSpec"
            )
    config = Config.model_validate(graph)
    checked = {"apiVersion": config.apiVersion, "components": {}}
    names = WORKER_COMPONENT_NAMES[graph["spec"]["backendFramework"]]
    expected = {"prefill": names.prefill_worker_k8s_name, "decode": names.decode_worker_k8s_name}
    for component in config.spec.components:
        container = get_main_container(component)
        argv = [*container.command, *container.args]
        entry = checked["components"][component.name] = {"type": component.component_type}
        if argv[:3] == ["python3", "-m", "dynamo.frontend"]:
            sys.argv = ["dynamo.frontend", *argv[3:]]
            entry["router_mode"] = frontend_parse_args()[0].router_mode
            continue
        if argv[:3] != ["python3", "-m", "dynamo.trtllm"]:
            problems.append(
                f"{deploy.name} {component.name}: neither dynamo.frontend nor dynamo.trtllm: {argv[:3]}"
            )
            continue
        try:
            parsed = worker_parse_args(argv[3:])
        except SystemExit:
            problems.append(f"{deploy.name} {component.name}: dynamo.trtllm refuses its arguments {argv[3:]}")
            continue
        role = component.component_type
        if role in expected and component.name != expected[role]:
            problems.append(f"{deploy.name} {component.name}: Dynamo's planner looks for {expected[role]!r}")
        entry.update(
            tp=parsed.tensor_parallel_size,
            pp=parsed.pipeline_parallel_size,
            mode=str(parsed.disaggregation_mode.value),
            extra_engine_args=parsed.extra_engine_args,
        )
        theirs = copy.deepcopy(component)
        theirs.multinode = None
        set_multinode_config(theirs, 0, gpus_per_node)
        ours = component.multinode.model_dump() if component.multinode is not None else None
        dynamo_says = theirs.multinode.model_dump() if theirs.multinode is not None else None
        entry["multinode"] = ours
        if ours != dynamo_says:
            problems.append(
                f"{deploy.name} {component.name}: multinode {ours}, Dynamo's rule says {dynamo_says}"
            )
    return checked


def main(gpus_per_node: int, directories: list[Path]) -> int:
    stub_tensorrt_llm()
    planner_tables_only()
    problems: list[str] = []
    checked = {str(d): check(d, gpus_per_node, problems) for d in directories}
    print(json.dumps({"checked": checked, "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), [Path(p) for p in sys.argv[2:]]))
