"""`stop` strings: the text is cut before the first one, which is never returned.

The engine also gets them as stop words, but it matches token sequences, and a string can be spelt by
other tokens than its own encoding (or start inside a token), so the text is the authority. A streamed
delta keeps back only its longest ending that begins a stop string, until the next delta shows whether
the stop string follows; any match is then found whole, so streamed deltas join to exactly the
non-streamed text.
"""

from __future__ import annotations


class StopText:
    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(stop for stop in stops if stop)
        self.keep = max((len(stop) for stop in self.stops), default=1) - 1
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text that can be released now, whether a stop string ended the answer)."""
        buffer = self.pending + text
        found = [index for index in (buffer.find(stop) for stop in self.stops) if index >= 0]
        if found:
            self.pending = ""
            return buffer[: min(found)], True
        cut = len(buffer) - self._started_stop(buffer)
        self.pending = buffer[cut:]
        return buffer[:cut], False

    def _started_stop(self, buffer: str) -> int:
        """The length of the longest ending of `buffer` that is the beginning of a stop string."""
        for size in range(min(self.keep, len(buffer)), 0, -1):
            ending = buffer[-size:]
            if any(stop.startswith(ending) for stop in self.stops):
                return size
        return 0

    def flush(self) -> str:
        """What was kept back, at the end of an answer that no stop string ended."""
        rest, self.pending = self.pending, ""
        return rest
