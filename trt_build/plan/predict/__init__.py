"""Predictions: TTFT, ITL and throughput from NVIDIA's AIConfigurator, in its own venv (`make predictor`).

  coverage.py  which GPUs / formats its measured data covers, and why not where it does not
  bridge.py    the subprocess to worker.py (run by the predictor venv's python) and the model it reads
  predict.py   `plan --predict`: one configuration at a concurrency, or at max throughput
  slo.py       `plan --slo`: the search over GPUs, TP, replicas, agg / disagg and batch; the choice
  render.py    estimates as text, JSON and the Pareto PNG
Facts: docs/upstream-2026.md §6.
"""
