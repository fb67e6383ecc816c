#!/usr/bin/env bash
# The Dynamo graph of this deployment on one GPU host (swallow-trt deploy dynamo; see ../manifest.json).
# Needs Dynamo with its TensorRT-LLM extra (the runtime image). Ctrl-C stops every process it started.
set -euo pipefail

echo 'this deployment needs 16 GPUs on 2 nodes of 8; run it with ../slurm/ or ../k8s/ instead.' >&2
exit 2
