"""One Dynamo worker against two behind the KV router, on the same load: requests/s and TTFT side by side.

Each configuration is a real Dynamo graph on 127.0.0.1 (frontend + `dynamo.mocker` workers, which simulate
TensorRT-LLM's scheduling and KV cache without a GPU) driven by `swallow-trt bench` over the OpenAI API. The prompts share a
few long Japanese prefixes (system prompts, few-shot headers), the load where KV-aware routing pays: a
repeated prefix goes back to the worker that holds it. On a machine with few cores the frontend and the
load generator, not the simulated engines, saturate first (docs/upstream-2026.md §5.6): read the numbers
as what this host's graph does, not as what a second GPU buys. `make bench-dynamo` runs it:

    .venv/bin/python -m benchmarks.perf.dynamo_routing MODEL_DIR --output DIR [--requests 96 --concurrency 16]
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks.metrics.results import read_results
from benchmarks.options import BenchOptions
from benchmarks.run import run_bench
from dynamo_deploy.graph.graph import DynamoGraph, GraphOptions
from dynamo_deploy.graph.local_deployment import local_deployment
from triton_repo.launch.tritonserver import free_port

CONFIGS = (("1 worker", 1), ("2 workers, KV router", 2))
PREFIXES = 8  # distinct shared prefixes
PREFIX = "あなたは京都の老舗旅館の案内係です。季節の行事、料理、交通について丁寧に答えてください。"


def shared_prefix_rows(requests: int) -> list[dict[str, str]]:
    """`requests` prompts over PREFIXES long prefixes, each with its own short question."""
    return [
        {"prompt": f"第{i % PREFIXES}版。" + PREFIX * 12 + f"\n質問{i}: 紅葉の見頃はいつですか?"}
        for i in range(requests)
    ]


def run_config(model_dir: Path, workers: int, output: Path, dataset: Path, requests: int, concurrency: int):
    run_dir = output.parent / f"{output.name}-graph"  # beside the results, which bench writes whole
    deployment = local_deployment(model_dir, run_dir / "deploy", workers=workers, router="kv")
    options = GraphOptions(engine="mocker", http_port=free_port(), run_dir=run_dir)
    with DynamoGraph(deployment, options) as graph:
        run_bench(
            BenchOptions(
                output=output,
                url=graph.url,
                protocol="openai",
                model=deployment.served_model_name,
                tokenizer_dir=model_dir,
                concurrency=str(concurrency),
                num_requests=requests,
                warmup=concurrency,
                dataset=str(dataset),
                osl=64,
                ignore_eos=True,
                openai_endpoint="completions",
                progress=False,
                overwrite=True,
            )
        )
    return read_results(output)[0].summary


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), required=True)
@click.option("--requests", type=click.IntRange(min=1), default=96, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
def main(model_dir: Path, output: Path, requests: int, concurrency: int) -> None:
    output.mkdir(parents=True, exist_ok=True)
    dataset = output / "shared-prefix.jsonl"
    rows = shared_prefix_rows(requests + concurrency)
    dataset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    lines = [f"{'configuration':<24}{'req/s':>8}{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'errors':>8}"]
    for label, workers in CONFIGS:
        click.echo(
            f"{label}: starting the graph and sending {requests} requests at concurrency {concurrency}..."
        )
        s = run_config(model_dir, workers, output / f"workers-{workers}", dataset, requests, concurrency)
        lines.append(
            f"{label:<24}{s['request_throughput']:>8.2f}{s['metrics']['ttft_ms']['p50']:>13.1f}{s['metrics']['ttft_ms']['p99']:>13.1f}"
            f"{s['num_errors']:>8}"
        )
    click.echo("\n".join(lines))
    (output / "SUMMARY.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
