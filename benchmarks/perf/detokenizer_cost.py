"""Detokenizer cost per token over a long Japanese answer: incremental (ours) vs naive full re-decode.

Streams a 4096-token Japanese text (emoji and rare kanji included, so characters split across tokens)
token by token through `IncrementalDetokenizer` and through a naive detokenizer that re-decodes the
whole output each step (what `accumulate_tokens` in the stock BLS does), and prints the mean cost per
token over the first and the last 512 tokens. Flat means the last 512 cost about what the first do.

    .venv/bin/python -m benchmarks.perf.detokenizer_cost [--tokens 4096] [--window 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

from triton_repo.models.detokenizer import REPLACEMENT, IncrementalDetokenizer

JAPANESE = (
    "東京の紅葉した公園で、子供たちが遊んでいます。🍁🍂 秋の京都は観光客で賑わい、嵐山の竹林や清水寺を訪れる人が"
    "絶えません。𠮷野家の牛丼を食べた後、鬱蒼とした森を抜けて齉龘という珍しい漢字の話をしました😀。"
    "東京工業大学と産総研が開発したSwallowは、日本語の能力を高めた大規模言語モデルです。"
)


@dataclass
class Costs:
    """Mean microseconds per streamed token over the first and the last `window` tokens."""

    name: str
    first_us: float
    last_us: float

    @property
    def growth(self) -> float:
        return self.last_us / self.first_us


def japanese_ids(tokenizer, tokens: int) -> list[int]:
    """Exactly `tokens` ids of the sample repeated, ending on a whole character (padded with 。)."""
    ids: list[int] = []
    while len(ids) < tokens:
        ids += tokenizer.encode(JAPANESE, add_special_tokens=False)
    ids = ids[:tokens]
    while tokenizer.decode(ids).endswith(REPLACEMENT):
        ids.pop()
    filler = tokenizer.encode("。", add_special_tokens=False)
    return ids + filler * (tokens - len(ids))


def per_token_seconds(step: Callable[[int], str], ids: list[int]) -> list[float]:
    times = []
    for token in ids:
        start = time.perf_counter()
        step(token)
        times.append(time.perf_counter() - start)
    return times


def measure(
    name: str, make_step: Callable[[], Callable[[int], str]], ids: list[int], window: int, repeats: int
):
    best: list[float] | None = None
    for _ in range(repeats):
        times = per_token_seconds(make_step(), ids)
        best = times if best is None else [min(a, b) for a, b in zip(best, times, strict=True)]
    assert best is not None
    mean = lambda values: 1e6 * sum(values) / len(values)  # noqa: E731
    return Costs(name, mean(best[:window]), mean(best[-window:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from trt_build.source.tokenizer import ensure_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer())
    decode = lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)  # noqa: E731
    ids = japanese_ids(tokenizer, args.tokens)
    full = decode(ids)

    def incremental() -> Callable[[int], str]:
        detokenizer = IncrementalDetokenizer(decode)
        return lambda token: detokenizer.push([token])

    def naive() -> Callable[[int], str]:
        seen: list[int] = []
        emitted = [0]

        def step(token: int) -> str:
            seen.append(token)
            text = decode(seen)
            delta = text[emitted[0] :]
            emitted[0] = len(text)
            return delta

        return step

    detokenizer = IncrementalDetokenizer(decode)
    deltas = [detokenizer.push([token]) for token in ids] + [detokenizer.flush()]
    assert "".join(deltas) == full and not any(REPLACEMENT in d for d in deltas)

    results = [
        measure("incremental (prefix/read offsets)", incremental, ids, args.window, args.repeats),
        measure("naive full re-decode", naive, ids, args.window, args.repeats),
    ]
    print(f"{len(ids)} tokens of Japanese ({len(full)} characters); deltas == full decode, no U+FFFD")
    print(
        f"{'detokenizer':<36}{'first ' + str(args.window):>14}{'last ' + str(args.window):>14}{'last/first':>12}"
    )
    for r in results:
        print(f"{r.name:<36}{r.first_us:>11.1f} µs{r.last_us:>11.1f} µs{r.growth:>11.2f}x")
    print(f"naive / incremental over the last {args.window}: {results[1].last_us / results[0].last_us:.1f}x")


if __name__ == "__main__":
    main()
