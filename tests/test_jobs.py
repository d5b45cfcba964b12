"""The build's job pool: order, dependencies, side-by-side runs, failures."""
import threading

import pytest

from dipddpm_lib import jobs
from dipddpm_lib.jobs import Job


def recorder():
    order, lock = [], threading.Lock()

    def make(name, fail=False, wait_for=None, timeout=5.0):
        def fn():
            if wait_for is not None:  # only returns if the other job runs at the same time
                assert wait_for.wait(timeout), f"{name}: never ran beside its partner"
            with lock:
                order.append(name)
            if fail:
                raise RuntimeError(f"{name} broke")
            return name.upper()
        return fn
    return order, make


def test_one_worker_runs_in_list_order_and_waits_for_dependencies():
    order, make = recorder()
    out = jobs.run_jobs([Job("b", make("b"), after=("a",)), Job("a", make("a")), Job("c", make("c"))],
                        1, log=lambda s: None)
    assert order == ["a", "b", "c"]  # b waits for a; then list order
    assert [o.status for o in out.values()] == ["done"] * 3 and out["b"].value == "B"
    assert list(out) == ["b", "a", "c"]


def test_two_workers_run_two_jobs_at_once():
    order, make = recorder()
    a_started, b_started = threading.Event(), threading.Event()

    def a():
        a_started.set()
        return make("a", wait_for=b_started)()

    def b():
        b_started.set()
        return make("b", wait_for=a_started)()
    out = jobs.run_jobs([Job("a", a), Job("b", b)], 2, log=lambda s: None)
    assert {o.status for o in out.values()} == {"done"}  # each saw the other running


def test_a_failure_stops_new_jobs_and_skips_what_waits_on_it():
    order, make = recorder()
    lines = []
    out = jobs.run_jobs([Job("a", make("a", fail=True)), Job("b", make("b"), after=("a",)),
                         Job("c", make("c"))], 1, log=lines.append)
    assert out["a"].status == "failed" and "a broke" in str(out["a"].error)
    assert out["b"].status == "not run" and out["c"].status == "not run" and order == ["a"]
    assert any(line.startswith("[FAILED] a") for line in lines)


def test_a_failure_that_does_not_stop_the_build_skips_only_its_dependents():
    order, make = recorder()
    out = jobs.run_jobs([Job("p", make("p", fail=True), stops_build=False),
                         Job("q", make("q"), after=("p",)), Job("r", make("r"))], 1, log=lambda s: None)
    assert [out[n].status for n in "pqr"] == ["failed", "not run", "done"] and order == ["p", "r"]


def test_a_job_after_failure_runs_once_its_dependencies_finished_either_way():
    order, make = recorder()
    out = jobs.run_jobs([Job("p", make("p", fail=True), stops_build=False), Job("q", make("q"), stops_build=False),
                         Job("collate", make("collate"), after=("p", "q"), after_failure=True),
                         Job("ch", make("ch"), after=("collate",))], 2, log=lambda s: None)
    assert [out[n].status for n in ("p", "q", "collate", "ch")] == ["failed", "done", "done", "done"]
    assert order.index("collate") > max(order.index("p"), order.index("q"))
    assert order.index("ch") > order.index("collate")
    out = jobs.run_jobs([Job("a", make("a", fail=True)),  # stops the build: nothing new starts
                         Job("b", make("b"), after=("a",), after_failure=True)], 1, log=lambda s: None)
    assert out["b"].status == "not run"


@pytest.mark.parametrize("bad,match", [
    ([Job("a", lambda: 1), Job("a", lambda: 2)], "distinct; repeated: \\['a'\\]"),
    ([Job("a", lambda: 1, after=("z",))], "unknown job\\(s\\) \\['z'\\]"),
])
def test_bad_job_lists_fail_before_anything_runs(bad, match):
    with pytest.raises(ValueError, match=match):
        jobs.run_jobs(bad, 1, log=lambda s: None)


def test_bad_worker_count():
    with pytest.raises(ValueError, match="workers must be a positive whole number"):
        jobs.run_jobs([], 0)


def test_threads_are_shared_out_and_a_user_setting_wins():
    assert jobs.threads_per_job(2, cpus=2) == 1 and jobs.threads_per_job(2, cpus=16) == 8
    assert jobs.threads_per_job(4, cpus=2) == 1
    env = {"MKL_NUM_THREADS": "3"}
    assert jobs.set_thread_variables(1, env) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"}
