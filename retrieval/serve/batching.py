"""Micro-batching for the server: concurrent queries answered together.

A query alone pays every fixed cost of a network's forward pass and of a search; the same work for
thirty queries at once costs a few times one (results/serve/load.md). Requests hand their query
to a :class:`MicroBatcher` and wait; a worker thread takes the first waiting query, gathers those
that arrive within ``max_wait_s`` (a few milliseconds) up to ``max_batch``, groups them by
everything that must be equal for one batched call (collection, modality, k, target, route,
filter), and answers each group with one call. If a group's call fails, its queries are answered
one at a time, so that one bad query (an image that does not decode) fails alone with its own
error. The queue is bounded: when it is full, a request is refused at once (the server answers 503
with ``Retry-After``) instead of waiting without end.

With a ``prepare`` step (the server's: encoding the queries), a batch is answered in two stages on two
threads, a pipeline: while one batch is answered (searched), the next is taken and prepared (encoded).
The encoder releases the interpreter's lock while it computes, so the two overlap on two cores; the
next batch is taken only when the preparing thread is free, so it gathers every query that arrived
meanwhile (two batch workers instead split the waiting queries into halves:
results/serve/wrk-settings.md).

The worker exits when it has been idle for a while and is started again by the next query, so an
app that is no longer used holds no thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple


class QueueFull(Exception):
    """More queries are waiting than the server will hold; try again shortly."""


class MicroBatcher:
    """``submit(key, payload)`` blocks until ``run(key, payloads)`` has answered the payload (or
    raised for it). ``run`` returns one result per payload, in order. With ``prepare``, ``run`` is
    given ``prepare(key, payloads)`` instead of the payloads, on another thread (see above)."""

    def __init__(self, run: Callable[[Hashable, Any], List[Any]], *, max_batch: int = 32,
                 max_wait_s: float = 0.005, max_queue: int = 256, workers: int = 1, idle_exit_s: float = 5.0,
                 waited: Optional[Callable[[float], None]] = None,
                 prepare: Optional[Callable[[Hashable, List[Any]], Any]] = None):
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1 or workers < 1:
            raise ValueError(f"expected max_batch, max_queue and workers >= 1 and max_wait_s >= 0, got {max_batch}, "
                             f"{max_queue}, {workers} and {max_wait_s}")
        self.run, self.prepare, self.max_batch, self.max_wait_s = run, prepare, max_batch, max_wait_s
        self.workers, self.idle_exit_s = workers, idle_exit_s
        self.waited = waited  # called with each query's seconds from submit to its batch's start
        self._queue: "queue.Queue[Tuple[Hashable, Any, Future]]" = queue.Queue(max_queue)
        self._alive = 0
        self._company = False  # whether the last batch held more than one query (then the next waits)
        self._guard = threading.Lock()
        self.batches: "deque[int]" = deque(maxlen=1024)  # sizes of the latest calls (bounded: a server runs for weeks)

    def submit(self, key: Hashable, payload: Any, timeout: float = None) -> Any:
        return self.submit_future(key, payload).result(timeout)

    def submit_future(self, key: Hashable, payload: Any) -> Future:
        """Queues the payload at once (QueueFull when the queue is full); its answer comes in the future."""
        fut: Future = Future()
        fut.submitted = time.perf_counter()
        try:
            self._queue.put_nowait((key, payload, fut))
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} queries are already waiting") from None
        self._ensure_workers()
        return fut

    def _ensure_workers(self) -> None:
        with self._guard:
            while self._alive < self.workers:
                self._alive += 1
                handoff: "Optional[queue.Queue]" = None
                if self.prepare is not None:  # bounded: at most two prepared batches wait to be answered
                    handoff = queue.Queue(1)
                    threading.Thread(target=self._finish, args=(handoff,), name="micro-batcher-answer",
                                     daemon=True).start()
                threading.Thread(target=self._work, args=(handoff,), name="micro-batcher", daemon=True).start()

    def _take(self) -> List[Tuple[Hashable, Any, Future]]:
        """The first waiting query, and those that arrive within ``max_wait_s``, up to ``max_batch``.
        The wait is spent only when the last batch had company and the first query came alone: a query
        alone (one client, a quiet server) would only wait for nobody (at 1 connection, half its latency:
        results/serve/wrk.md), and queries that queued while the worker was busy are already a batch,
        which waiting would only hold back while the encoder idles (results/serve/wrk-backlog.md)."""
        first = self._queue.get(timeout=self.idle_exit_s)
        taken = [first]
        backlog = not self._queue.empty()
        deadline = time.monotonic() + (self.max_wait_s if self._company and not backlog else 0.0)
        while len(taken) < self.max_batch:
            try:  # what is already waiting is taken without waiting
                taken.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                taken.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        self._company = len(taken) > 1
        return taken

    def _work(self, handoff: "Optional[queue.Queue]" = None) -> None:
        while True:
            try:
                taken = self._take()
            except queue.Empty:
                with self._guard:  # idle: exit, unless a query arrived meanwhile
                    idle = self._queue.empty()
                    if idle:
                        self._alive -= 1
                if not idle:
                    continue
                if handoff is not None:  # (outside the guard: a request's submit never waits on this put)
                    handoff.put(None)  # the answering thread exits after what it holds
                return
            # a query whose client gave up (its future cancelled) is not answered
            taken = [t for t in taken if t[2].set_running_or_notify_cancel()]
            if self.waited is not None:
                now = time.perf_counter()
                for _, _, fut in taken:
                    self.waited(now - fut.submitted)
            groups: Dict[Hashable, List[Tuple[Any, Future]]] = {}
            for key, payload, fut in taken:
                groups.setdefault(key, []).append((payload, fut))
            for key, items in groups.items():
                if handoff is None:
                    self._answer(key, items)
                else:
                    handoff.put((key, items, self._prepared(key, items)))

    def _prepared(self, key: Hashable, items: List[Tuple[Any, Future]]) -> Optional[Tuple[Any, ...]]:
        """``(prepare(key, payloads),)``; ``()`` when that failed for several queries (each is then
        prepared and answered alone); None when it failed for the only one (its error is its answer)."""
        try:
            return (self.prepare(key, [p for p, _ in items]),)
        except BaseException as exc:
            if len(items) == 1:
                items[0][1].set_exception(exc)
                return None
            return ()

    def _finish(self, handoff: "queue.Queue") -> None:
        """The answering stage: runs each prepared batch, in the order they were taken."""
        while True:
            job = handoff.get()
            if job is None:
                return
            key, items, prepared = job
            if prepared is not None:
                self._answer(key, items, prepared)

    def _answer(self, key: Hashable, items: List[Tuple[Any, Future]], prepared: Tuple[Any, ...] = ()) -> None:
        try:
            self.batches.append(len(items))
            payloads = [p for p, _ in items]
            if self.prepare is not None:
                payloads = prepared[0] if prepared else self.prepare(key, payloads)
            results = self.run(key, payloads)
            if len(results) != len(items):
                raise RuntimeError(f"a batched call gave {len(results)} answers for {len(items)} queries")
        except BaseException as exc:
            if len(items) == 1:
                items[0][1].set_exception(exc)
                return
            for payload, fut in items:  # one at a time: each query gets its own answer or error
                self._answer(key, [(payload, fut)])
            return
        for (_, fut), res in zip(items, results):
            fut.set_result(res)
