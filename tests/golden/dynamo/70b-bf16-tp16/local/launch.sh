#!/usr/bin/env bash
# The Dynamo graph of this deployment on one GPU host (swallow-trt deploy dynamo; see ../manifest.json).
# Needs Dynamo with its TensorRT-LLM extra (the runtime image). Ctrl-C stops every process it started.
# Discovery and requests stay on 127.0.0.1; KV events use ZMQ's direct mode, whose worker ports bind all
# interfaces (docs/upstream-2026.md §5.3 in swallow-trt).
set -euo pipefail

echo 'this deployment needs 16 GPUs on 2 nodes of 8; run it with ../slurm/ or ../k8s/ instead.' >&2
exit 2
