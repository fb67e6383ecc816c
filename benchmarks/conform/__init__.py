"""`swallow-trt conform URL`: a Japanese serving conformance suite for any endpoint.

Triton (the `ensemble` / `tensorrt_llm_bls` fronts over HTTP generate / generate_stream and gRPC
streaming, with and without a client request id) or OpenAI-compatible (chat and completions, streamed
and not). One prompt asks the model to repeat a sentence full of characters split across tokens;
greedy decoding makes streamed and non-streamed answers comparable byte for byte. Refused / not ready /
which protocol is said first, by the check `chat` and `bench` share (triton_repo/client/server_check.py).

  prompt.py   what is asked, and the character classes looked for in the answer
  paths.py    a path (one way to reach the model) and an answer
  triton.py   the Triton paths        openai_api.py  the OpenAI paths
  checks.py   the checks, a table     report.py      table and JSON
  suite.py    run_conform(options)
"""

UNREACHABLE_EXIT = 2  # the endpoint could not be tested at all (1: it was, and a check failed)
