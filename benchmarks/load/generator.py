"""Load generation on one asyncio loop: closed-loop concurrency or open-loop request rate.

Closed loop keeps `concurrency` requests in flight (each worker sends the next as soon as its last one
ends). Open loop sends at a request rate with Poisson arrivals, or gamma arrivals whose shape is the
burstiness (vLLM's convention: shape k, scale 1/(rate k); k < 1 is burstier, k = 1 is Poisson), with an
optional cap on requests in flight. Warm-up requests run first and are reported apart. A stop event
(Ctrl-C) ends sending and cancels what is in flight; what finished is kept.

A server that stops answering is given up on: after `max_consecutive_errors` failed requests in a row, or
when requests are in flight and nothing (no chunk, no end, no error) has come back for `stall_timeout_s`.
The requests then in flight fail with the reason and `Runner.given_up` says it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from benchmarks.clients.base import StreamClient
from benchmarks.load.datasets import BenchRequest
from benchmarks.load.levels import LoadLevel
from benchmarks.metrics.summary import RequestRecord
from benchmarks.options import MAX_CONSECUTIVE_ERRORS, STALL_TIMEOUT_S

ARRIVALS = ("poisson", "gamma", "constant")


def arrival_gaps(rate: float, count: int, arrival: str, burstiness: float, seed: int) -> list[float]:
    """Seconds between consecutive sends (mean 1/rate)."""
    if rate == float("inf"):
        return [0.0] * count
    if arrival == "constant":
        return [1.0 / rate] * count
    rng = random.Random(seed)
    shape = 1.0 if arrival == "poisson" else burstiness
    return [rng.gammavariate(shape, 1.0 / (rate * shape)) for _ in range(count)]


@dataclass
class RunResult:
    records: list[RequestRecord]
    warmup: dict[str, Any]
    interrupted: bool
    client_cpu_s: float
    wall_s: float
    given_up: str | None = None  # why the server was given up on during this level


class Runner:
    """Drives one client over a pool of requests (cycled) for each load level."""

    def __init__(
        self,
        client: StreamClient,
        pool: list[BenchRequest],
        progress: bool = True,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS,
    ):
        self.client = client
        self.pool = pool
        self.progress = progress
        self.stop = asyncio.Event()  # Ctrl-C or `give_up`: stop sending, cancel what is in flight
        self.stall_timeout_s = stall_timeout_s
        self.max_consecutive_errors = max_consecutive_errors
        self.given_up: str | None = None  # why the server was given up on; None: Ctrl-C stopped it
        self.level = ""  # the name of the level running
        self.in_flight: dict[int, RequestRecord] = {}
        self.consecutive_errors = 0
        self.last_answer = time.perf_counter()  # the latest response of any kind (chunk, end, error)

    def give_up(self, reason: str) -> None:
        """Stop the sweep: the server is not answering (the first reason is kept)."""
        self.given_up = self.given_up or f"at {self.level}: {reason}"
        self.stop.set()

    def answered(self, record: RequestRecord) -> None:
        """Count one finished request towards the consecutive-error limit."""
        self.last_answer = time.perf_counter()
        if record.error is None:
            self.consecutive_errors = 0
            return
        self.consecutive_errors += 1
        if self.consecutive_errors >= self.max_consecutive_errors:
            self.give_up(f"{self.consecutive_errors} requests in a row failed (the last: {record.error})")

    async def watch(self) -> None:
        """Give up when requests are in flight and nothing has come back for `stall_timeout_s`."""
        while not self.stop.is_set():
            await asyncio.sleep(min(1.0, self.stall_timeout_s / 4))
            if not self.in_flight:
                continue
            oldest = min(record.send_time for record in self.in_flight.values())
            chunks = [r.chunk_times[-1] for r in self.in_flight.values() if r.chunk_times]
            quiet_since = max(self.last_answer, oldest, *chunks)
            if time.perf_counter() - quiet_since > self.stall_timeout_s:
                self.give_up(f"no response for {self.stall_timeout_s:g} s with requests in flight")

    def request(self, number: int) -> BenchRequest:
        return self.pool[number % len(self.pool)]

    async def one(self, number: int, records: list[RequestRecord], bar: tqdm | None) -> None:
        request = self.request(number)
        record = RequestRecord(
            index=len(records),
            send_time=time.perf_counter(),
            input_tokens=request.input_tokens,
            requested_output_tokens=request.output_tokens,
        )
        records.append(record)
        self.in_flight[id(record)] = record
        try:
            await self.client.send(request, record)
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        except Exception as error:  # a client bug must not stop the benchmark; count it
            record.fail(f"{type(error).__name__}: {error}")
        finally:
            del self.in_flight[id(record)]
        self.answered(record)
        if bar is not None:
            bar.update(1)

    async def closed_loop(
        self,
        first: int,
        slots: int,
        total: int | None,
        deadline: float | None,
        records: list,
        bar: tqdm | None,
    ) -> None:
        numbers = itertools.count(first)

        async def worker() -> None:
            while not self.stop.is_set():
                number = next(numbers)
                if total is not None and number - first >= total:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                await self.one(number, records, bar)

        await asyncio.gather(*(worker() for _ in range(slots)))

    async def open_loop(
        self,
        first: int,
        level: LoadLevel,
        total: int | None,
        deadline: float | None,
        arrival: str,
        burstiness: float,
        seed: int,
        records: list,
        bar: tqdm | None,
    ) -> None:
        semaphore = asyncio.Semaphore(level.max_concurrency) if level.max_concurrency else None
        gaps = arrival_gaps(level.value, total if total is not None else 1_000_000, arrival, burstiness, seed)
        tasks: set[asyncio.Task] = set()

        async def limited(number: int) -> None:
            if semaphore is None:
                return await self.one(number, records, bar)
            async with semaphore:
                return await self.one(number, records, bar)

        next_send = time.perf_counter()
        for offset, gap in enumerate(gaps):
            now = time.perf_counter()
            if self.stop.is_set() or (deadline is not None and now >= deadline):
                break
            if next_send > now:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), next_send - now)
                if self.stop.is_set():
                    break
            task = asyncio.ensure_future(limited(first + offset))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_send += gap
        if tasks:
            await asyncio.gather(*tasks)

    async def run_level(
        self,
        level: LoadLevel,
        num_requests: int | None,
        duration_s: float | None,
        warmup: int,
        arrival: str = "poisson",
        burstiness: float = 1.0,
        seed: int = 0,
    ) -> RunResult:
        """Warm up, then measure one level. Returns the measured records and the warm-up's figures."""
        self.level, self.consecutive_errors, self.last_answer = level.name, 0, time.perf_counter()
        watcher = asyncio.ensure_future(self.watch())
        try:
            return await self._run_level(level, num_requests, duration_s, warmup, arrival, burstiness, seed)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _run_level(
        self,
        level: LoadLevel,
        num_requests: int | None,
        duration_s: float | None,
        warmup: int,
        arrival: str,
        burstiness: float,
        seed: int,
    ) -> RunResult:
        warmup_records: list[RequestRecord] = []
        warmup_info: dict[str, Any] = {"requests": warmup}
        if warmup > 0:
            started = time.perf_counter()
            await self.guard(
                self.closed_loop(0, min(warmup, level.slots or warmup), warmup, None, warmup_records, None)
            )
            self.fail_unanswered(warmup_records)
            warmup_info.update(
                duration_s=time.perf_counter() - started,
                errors=sum(1 for r in warmup_records if not r.ok and not r.cancelled),
                first_error=next((r.error for r in warmup_records if r.error), None),
            )
            if warmup_info["errors"] == warmup:
                self.give_up(f"every warm-up request failed (the first: {warmup_info['first_error']})")
        records: list[RequestRecord] = []
        bar = (
            tqdm(
                total=num_requests,
                desc=f"{self.client.protocol} {level.name}",
                unit="req",
                mininterval=0.5,
                disable=not self.progress,
                leave=False,
            )
            if not self.stop.is_set()
            else None
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        deadline = wall0 + duration_s if duration_s else None
        if not self.stop.is_set():
            if level.kind == "concurrency":
                body = self.closed_loop(warmup, int(level.value), num_requests, deadline, records, bar)
            else:
                body = self.open_loop(
                    warmup, level, num_requests, deadline, arrival, burstiness, seed, records, bar
                )
            await self.guard(body)
        if bar is not None:
            bar.close()
        self.fail_unanswered(records)
        return RunResult(
            records=records,
            warmup=warmup_info,
            interrupted=self.stop.is_set() and not self.given_up,
            given_up=self.given_up,
            client_cpu_s=time.process_time() - cpu0,
            wall_s=time.perf_counter() - wall0,
        )

    def fail_unanswered(self, records: list[RequestRecord]) -> None:
        """Requests stopped in flight: failed with the reason when the server was given up on, else
        cancelled (Ctrl-C, the end of a --duration run)."""
        for record in records:
            if record.end_time is None and record.error is None:
                if self.given_up:
                    record.cancelled = False
                    record.fail(f"given up: {self.given_up}")
                else:
                    record.cancelled = True

    async def guard(self, body) -> None:
        """Run `body` until it ends or the stop event fires; on stop, cancel what is in flight."""
        task = asyncio.ensure_future(body)
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def stop_on_ctrl_c(runner: Runner, on_first: Callable[[], None] | None = None):
    """The first Ctrl-C sets the stop event so results are kept; a second one interrupts as usual.
    SIGTERM is left to `atomic_output_dir`, which removes the unfinished directory."""
    loop = asyncio.get_running_loop()
    installed = []

    def handler(sig: signal.Signals) -> None:
        runner.stop.set()
        if on_first:
            on_first()
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT,):
        try:
            loop.add_signal_handler(sig, handler, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
