"""`swallow-trt serve --dynamo` on a machine without TensorRT-LLM: a real Dynamo graph (frontend, router,
workers) on 127.0.0.1, whose workers are the CPU reference engine (or Dynamo's mocker).

Files run by the Dynamo venv (`worker.py`, `broker.py`) import only the standard library and Dynamo;
`engine_process.py` runs in the toolkit's venv (torch). See docs/upstream-2026.md §5.3 and §5.5.
"""
