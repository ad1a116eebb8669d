"""PoC generate and validation jobs (`POST /api/v1/inference/pow/generate`).

A job recomputes a list of nonces on the devices (at `PRIORITY_VALIDATION`, ahead of any
PoC chunk). Without `validation` its artifacts are the result (and, queued, they go to
`url + "/generated"` with the job's `request_id`); with `validation` the prover's vectors are
judged against the recomputed ones (spec §3):

- a nonce mismatches when the prover's vector is not 12 finite fp16 values (bad base64
  included) or its L2 distance to the recomputed vector, both read from fp16 into float32,
  exceeds `dist_threshold`; a nonce whose recomputation held NaN is neither computed nor
  counted, while `n_total` stays `len(nonces)`;
- `p_value` = P[X >= n_mismatch] for X ~ Binomial(n_total, p_mismatch), computed exactly
  (`validation.binomial_tail`); `fraud_detected` = `p_value < fraud_threshold`.

**The alpha.** DAPI sends `stat_test.p_value_threshold` (0.05 on chain); the Python ML node
reads `fraud_threshold` (default 0.01) and drops the unknown key, so the chain's value never
applies (spec §1.6 #1). gonka reproduces that effective behaviour: alpha is
`fraud_threshold` when a client sends it, else 0.01, and `p_value_threshold` is ignored.
With 200 nonces and `p_mismatch` 0.1, fraud is detected from 31 mismatches, as on mainnet
today.

Without `wait` a job is queued (`{status: "queued", request_id, queued_count}`, the count
being the job's nonces, as the ML node's vLLM answers), 429 once
more than `max_queued_nonces` nonces would wait, and runs only while no PoC generation is
active; its verdict goes to `url + "/validated"` through the outbox. With `wait` it runs at
once and answers inline. Results are kept `result_ttl_s` (300 s) after a job ends, then
`job(request_id)` answers 404.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.mlnode.callbacks import ENCODING, Outbox, Round
from gonka_cli.mlnode.messages import GenerateRequest, MlNodeError, StatTest

log = logging.getLogger(__name__)

__all__ = ["Job", "JobQueue", "judge"]

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"

#: compute(request) -> {nonce: 24-byte artifact} for the request's nonces (NaN rows absent).
Compute = Callable[[GenerateRequest], Mapping[int, bytes]]


@dataclass
class Job:
    request_id: str
    request: GenerateRequest
    status: str = QUEUED
    result: dict[str, Any] | None = None
    error: str | None = None
    finished_at: float | None = None
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": self.status, "request_id": self.request_id}
        if self.result is not None:
            answer.update(self.result)
        if self.error is not None:
            answer["error"] = self.error
        return answer


def judge(
    vectors: Mapping[int, str],
    computed: Mapping[int, bytes],
    nonces: Sequence[int],
    stat_test: StatTest,
) -> dict[str, Any]:
    """The verdict on a prover's vectors (see the module docstring)."""
    import numpy as np

    from gonka_cli.compute.validation import binomial_tail

    mismatches: list[int] = []
    threshold = np.float32(stat_test.dist_threshold)
    for nonce in nonces:
        mine = computed.get(nonce)
        if mine is None:
            continue  # NaN on recomputation: not counted
        theirs = _vector(vectors.get(nonce))
        if theirs is None:
            mismatches.append(nonce)
            continue
        ours = np.frombuffer(mine, dtype="<f2").astype(np.float32)
        distance = np.linalg.norm(ours - theirs).astype(np.float32)
        if not distance <= threshold:
            mismatches.append(nonce)
    n_total = len(nonces)
    p_value = binomial_tail(len(mismatches), n_total, stat_test.p_mismatch)
    return {
        "n_total": n_total,
        "n_mismatch": len(mismatches),
        "mismatch_nonces": mismatches,
        "p_value": p_value,
        "fraud_detected": p_value < stat_test.fraud_threshold,
    }


def _vector(text: str | None) -> Any:
    """A prover's vector as float32[12], or None when it is not 12 finite fp16 values."""
    import numpy as np

    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) != 24:
        return None
    values = np.frombuffer(data, dtype="<f2").astype(np.float32)
    return values if bool(np.isfinite(values).all()) else None


def artifacts_list(nonces: Sequence[int], computed: Mapping[int, bytes]) -> list[dict[str, Any]]:
    return [
        {"nonce": n, "vector_b64": base64.b64encode(computed[n]).decode("ascii")}
        for n in nonces
        if n in computed
    ]


class JobQueue:
    """The queue of generate/validation jobs and the thread that runs them."""

    def __init__(
        self,
        compute: Compute,
        outbox: Outbox,
        *,
        wake_sender: Callable[[], None] = lambda: None,
        max_queued_nonces: int = 100_000,
        result_ttl_s: float = 300.0,
        on_verdict: Callable[[bool, int], None] | None = None,
        id_prefix: str = "0",
    ) -> None:
        self._compute = compute
        self._outbox = outbox
        self._wake_sender = wake_sender
        self.max_queued_nonces = max_queued_nonces
        self.result_ttl_s = result_ttl_s
        self._on_verdict = on_verdict or (lambda fraud, n: None)
        self._prefix = id_prefix
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._paused = False
        self._stop = False
        self.completed = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="pow-jobs", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def pause(self, paused: bool) -> None:
        """Hold queued jobs while PoC generation runs (`paused`), or let them run."""
        with self._cond:
            self._paused = paused
            self._cond.notify_all()

    # -- the front end's calls -------------------------------------------------------------

    def submit(self, request: GenerateRequest) -> dict[str, Any]:
        """Queue a job (`wait` false) or run it now (`wait` true) and answer."""
        job = Job(f"{self._prefix}:{uuid.uuid4()}", request)
        if request.wait:
            with self._cond:
                self._purge()
                self._jobs[job.request_id] = job
            self._execute(job, inline=True)
            answer = job.to_dict()
            if job.status == FAILED:
                raise MlNodeError(500, f"the job failed: {job.error}")
            if request.validation is None:
                answer.setdefault("encoding", dict(ENCODING))
            return answer
        with self._cond:
            self._purge()
            queued = self.queued_nonces()
            if queued + len(request.nonces) > self.max_queued_nonces:
                raise MlNodeError(
                    429,
                    f"{queued} nonces already queued (at most {self.max_queued_nonces}); "
                    "try again later",
                )
            self._jobs[job.request_id] = job
            self._queue.append(job)
            self._cond.notify_all()
        return {
            "status": "queued",
            "request_id": job.request_id,
            "queued_count": len(request.nonces),
        }

    def get(self, request_id: str) -> dict[str, Any]:
        with self._cond:
            self._purge()
            job = self._jobs.get(request_id)
            if job is None:
                raise MlNodeError(404, f"no job {request_id!r:.80} (results are kept 300 s)")
            return job.to_dict()

    def clear(self) -> int:
        """Drop every queued job (`pow/stop`); the running one finishes unreported."""
        with self._cond:
            dropped = len(self._queue)
            for job in [*self._queue, *(j for j in self._jobs.values() if j.status == RUNNING)]:
                job.cancelled = True
                if job.status == QUEUED:
                    self._finish(job, None, "cancelled by pow/stop")
            self._queue.clear()
        return dropped

    def queued_nonces(self) -> int:
        return sum(len(j.request.nonces) for j in self._queue)

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {
                "queued_jobs": len(self._queue),
                "queued_nonces": self.queued_nonces(),
                "completed": self.completed,
            }

    # -- running ---------------------------------------------------------------------------

    def _purge(self) -> None:
        limit = time.monotonic() - self.result_ttl_s
        for rid in [
            rid
            for rid, job in self._jobs.items()
            if job.finished_at is not None and job.finished_at < limit
        ]:
            del self._jobs[rid]

    def _finish(self, job: Job, result: dict[str, Any] | None, error: str | None) -> None:
        job.result, job.error = result, error
        job.status = FAILED if error is not None else COMPLETED
        job.finished_at = time.monotonic()
        if error is None:
            self.completed += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (self._paused or not self._queue):
                    self._cond.wait(1.0)
                if self._stop:
                    return
                job = self._queue.popleft()
                job.status = RUNNING
            try:
                self._execute(job, inline=False)
            except Exception:  # one bad job must not stop the queue
                log.exception("PoC job %s failed", job.request_id)

    def _execute(self, job: Job, *, inline: bool) -> None:
        request = job.request
        job.status = RUNNING
        try:
            computed = self._compute(request)
        except Exception as exc:
            message = (
                exc.message if isinstance(exc, MlNodeError) else f"{type(exc).__name__}: {exc}"
            )
            with self._cond:
                self._finish(job, None, message)
            log.warning("PoC job %s failed: %s", job.request_id, message)
            return
        if request.validation is not None:
            result = judge(request.validation, computed, request.nonces, request.stat_test)
            self._on_verdict(bool(result["fraud_detected"]), len(request.nonces))
        else:
            result = {"artifacts": artifacts_list(request.nonces, computed)}
        with self._cond:
            cancelled = job.cancelled
            if cancelled:
                self._finish(job, None, "cancelled by pow/stop")
            else:
                self._finish(job, result, None)
        if cancelled or inline or request.url is None:
            return
        if request.validation is not None:
            self._outbox.add_message(
                request.url,
                {
                    "request_id": job.request_id,
                    "block_hash": request.block_hash,
                    "block_height": request.block_height,
                    "public_key": request.public_key,
                    "node_id": request.node_id,
                    **result,
                },
            )
            self._wake_sender()
        else:
            target = Round(
                request.url,
                request.public_key,
                request.block_hash,
                request.block_height,
                request.node_id,
                job.request_id,
            )
            pairs = [(n, computed[n]) for n in request.nonces if n in computed]
            self._outbox.add_artifacts(target, pairs)
