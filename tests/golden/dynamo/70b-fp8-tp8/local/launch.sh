#!/usr/bin/env bash
# The Dynamo graph of this deployment on one GPU host (swallow-trt deploy dynamo; see ../manifest.json).
# Needs Dynamo with its TensorRT-LLM extra (the runtime image). Ctrl-C stops every process it started.
# Discovery and requests stay on 127.0.0.1; KV events use ZMQ's direct mode, whose worker ports bind all
# interfaces (docs/upstream-2026.md §5.3 in swallow-trt).
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKPOINT=${CHECKPOINT:-<CHECKPOINT>}
HOST="${HOST:-127.0.0.1}"
HTTP_PORT="${HTTP_PORT:-8000}"

needed=8
found=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
if (( found < needed )); then
  echo "this graph needs $needed GPUs on this host; nvidia-smi lists $found. Use ../slurm/ or ../k8s/," "or deploy fewer workers." >&2
  exit 2
fi

RUN="$(mktemp -d)"
export DYN_DISCOVERY_BACKEND=file
export DYN_REQUEST_PLANE=tcp
export DYN_EVENT_PLANE=zmq
export DYN_EVENT_PLANE_HOST=127.0.0.1
export DYN_TCP_RPC_HOST=127.0.0.1
export DYN_TCP_RESPONSE_STREAM_HOST=127.0.0.1
export DYN_SYSTEM_HOST=127.0.0.1
export DYN_FILE_KV="$RUN/discovery"

# job control: every process gets its own process group, so Ctrl-C reaches only this script, which
# then stops each group (a TP/PP worker's MPI ranks included): SIGINT, then SIGKILL after 30 s
set -m
pids=()
stop() {
  trap - INT TERM EXIT
  local pid alive
  for pid in "${pids[@]+"${pids[@]}"}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 30); do
    alive=0
    for pid in "${pids[@]+"${pids[@]}"}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 1
  done
  for pid in "${pids[@]+"${pids[@]}"}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

python3 -m dynamo.frontend --http-host "$HOST" --http-port "$HTTP_PORT" --router-mode kv &
pids+=($!)
# agg worker 0: TP 8 x PP 1 on GPU(s) 0,1,2,3,4,5,6,7
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python3 -m dynamo.trtllm --model "$CHECKPOINT" --served-model-name Llama-3.3-Swallow-70B-Instruct-v0.4-FP8 --extra-engine-args "$DEPLOY/options/agg.yaml" --tensor-parallel-size 8 --pipeline-parallel-size 1 --disaggregation-mode agg --publish-kv-events &
pids+=($!)

echo "Dynamo frontend: http://$HOST:$HTTP_PORT/v1 (model Llama-3.3-Swallow-70B-Instruct-v0.4-FP8); Ctrl-C stops the graph." >&2
status=0
wait -n || status=$?
echo "a process of the graph exited (status $status); stopping the others." >&2
exit "$status"
