"""What the engine says it did, read from its own Prometheus metrics (the C++ backend's family names).

`nv_trt_llm_request_metrics{request_type="active"}` counts requests generating now;
`nv_llm_output_token_len` records each finished request's output tokens (a cancelled one included).
So the tokens a request made are the histogram's sum before and after it, once nothing is active.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass

ACTIVE = re.compile(r'^nv_trt_llm_request_metrics\{[^}]*request_type="active"[^}]*\} (\S+)$', re.M)
OUTPUT_SUM = re.compile(r"^nv_llm_output_token_len_sum\{[^}]*\} (\S+)$", re.M)
OUTPUT_COUNT = re.compile(r"^nv_llm_output_token_len_count\{[^}]*\} (\S+)$", re.M)


@dataclass(frozen=True)
class EngineCounters:
    active: int
    output_tokens: int
    finished: int


def engine_counters(metrics_url: str) -> EngineCounters:
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()

    def value(pattern: re.Pattern) -> int:
        found = pattern.search(text)
        assert found, f"{pattern.pattern} not in the metrics"
        return int(float(found.group(1)))

    return EngineCounters(value(ACTIVE), value(OUTPUT_SUM), value(OUTPUT_COUNT))


def when_idle(metrics_url: str, timeout_s: float = 120) -> EngineCounters:
    """The counters once no request is generating (a deadline, not a measurement)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counters = engine_counters(metrics_url)
        if counters.active == 0:
            return counters
        assert time.monotonic() < deadline, f"the engine is still generating after {timeout_s} s: {counters}"
        time.sleep(0.05)
