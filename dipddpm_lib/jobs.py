"""A few build steps at once: a small dependency-aware pool for the report's notebook runs.

The build machine has two cores, and most of the report's notebooks fit small networks that a
second thread speeds up by only 1.2–1.5×. Two notebooks side by side, one thread each, get
more out of the machine. :func:`run_jobs` starts jobs in list order as soon as a worker is free
and a job's ``after`` jobs are done; a failed job with ``stops_build`` set stops new jobs from
starting (the running ones finish), and any job that waits on a failed job is not run, unless
it sets ``after_failure`` (it then runs once its ``after`` jobs have finished, done or failed:
the report's collate step, which records a failed tuning point instead of skipping it).

Each job is a call that runs in a thread; the notebooks themselves run in their own kernel
processes (papermill), so the threads only wait. The threads per kernel come from
:func:`threads_per_job`: CPU results are the same bit for bit only at the same thread count.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from .errors import check_positive_int

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    """One step of a build: ``fn()`` runs once every job named in ``after`` is done (or,
    with ``after_failure``, has finished either way)."""

    name: str
    fn: Callable[[], object]
    after: tuple[str, ...] = ()
    stops_build: bool = True  # a failure stops new jobs from starting
    after_failure: bool = False  # run even if an ``after`` job failed (not if one was not run)


@dataclass
class Outcome:
    """What happened to a job: ``done`` (with ``fn``'s return value), ``failed`` (with the
    exception) or ``not run`` (the build stopped, or a job it waits on did not finish)."""

    name: str
    status: str
    wall_s: float = 0.0
    value: object = None
    error: Exception | None = None


def _timed(fn: Callable[[], object]) -> tuple[float, object, Exception | None]:
    start = time.perf_counter()
    try:
        value, err = fn(), None
    except Exception as e:  # noqa: BLE001 — the job's failure is its outcome
        value, err = None, e
    return time.perf_counter() - start, value, err


def check_jobs(jobs: list[Job]) -> None:
    """Names are distinct and every ``after`` names a job of the list (``ValueError`` if not)."""
    names = [j.name for j in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"job names must be distinct; repeated: {dup}")
    unknown = sorted({d for j in jobs for d in j.after} - set(names))
    if unknown:
        raise ValueError(f"jobs wait on unknown job(s) {unknown}; jobs: {names}")


def run_jobs(jobs: list[Job], workers: int = 1, log: Callable[[str], None] = print
             ) -> dict[str, Outcome]:
    """Run ``jobs`` on ``workers`` threads, each as soon as a worker is free and its ``after``
    jobs are done, in list order otherwise. Returns every job's :class:`Outcome`, in list order.

    With ``workers=1`` the jobs run one after another in list order (dependencies permitting).
    """
    workers = check_positive_int("workers", workers)
    check_jobs(jobs)
    pending, running, out = list(jobs), {}, {}
    stopped = False
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            for job in list(pending):
                states = [out[d].status if d in out else None for d in job.after]
                blocking = ("not run",) if job.after_failure else ("failed", "not run")
                finished = ("done", "failed") if job.after_failure else ("done",)
                if stopped or any(s in blocking for s in states):
                    pending.remove(job)
                    out[job.name] = Outcome(job.name, "not run")
                elif len(running) < workers and all(s in finished for s in states):
                    pending.remove(job)
                    log(f"[start] {job.name}")
                    running[pool.submit(_timed, job.fn)] = job
            if not running:  # what is left waits on jobs that will never finish
                for job in pending:
                    out[job.name] = Outcome(job.name, "not run")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                wall, value, err = fut.result()
                out[job.name] = Outcome(job.name, "failed" if err else "done", wall, value, err)
                log(f"[{'FAILED' if err else 'done'}] {job.name} in {wall:.1f} s")
                stopped = stopped or (err is not None and job.stops_build)
    return {j.name: out[j.name] for j in jobs}


def threads_per_job(workers: int, cpus: int | None = None) -> int:
    """Threads for each of ``workers`` side-by-side processes: the CPUs shared out, at least 1."""
    return max(1, (cpus or os.cpu_count() or 1) // check_positive_int("workers", workers))


def set_thread_variables(threads: int, environ: dict | None = None) -> dict:
    """Set ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for the kernels started from here, unless
    the user set them; returns what the kernels will see."""
    env = os.environ if environ is None else environ
    for var in THREAD_VARIABLES:
        env.setdefault(var, str(check_positive_int("threads", threads)))
    return {var: env[var] for var in THREAD_VARIABLES}
