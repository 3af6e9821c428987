"""Real-Grain proofs: what Grain 0.17.1 itself does with each broken corpus module.

A real head (``grain_head.py``), Gnaw and, for server modules, ``python -m grain.worker``
run on 127.0.0.1. A hang is "no exit within the limit" (the head is then killed).
Every process is ended by its pid, and after each proof nothing of it is left.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import psutil
import pytest

from .real_grain import Grain, HeadRun, kill_all, real_grain, tagged_processes
from .sworkers._parts import (
    CALL_LIMIT_ENV,
    TOKEN,
    TOKEN_ENV,
    echo_service,
    rate_limited_service,
    rate_limited_service_retry_after,
    redis_service,
)

pytestmark = pytest.mark.real_grain
PACKAGE = "tests.kit.sworkers"
HANG_LIMIT = 4.0


@pytest.fixture
def grain_for() -> Iterator:
    """``grain_for(module)``: a real Gnaw for ``module`` and an echo service (``service=False``: none, for a
    server module); afterwards nothing is left."""
    tags: list[str] = []

    def start(module: str, delay: float = 0.0, *, service: object = True, **env: str):
        service_env: dict[str, str] = {}
        if service:  # a server module starts its own; True: the echo service, else the service's factory
            stack.append(echo_service(delay) if service is True else service())  # type: ignore[operator]
            service_env = stack[-1].__enter__()
        stack.append(real_grain(f"{PACKAGE}.{module}", {**service_env, **env}))
        grain = stack[-1].__enter__()
        tags.append(grain.tag)
        return grain

    stack: list = []
    yield start
    while stack:
        stack.pop().__exit__(None, None, None)
    for tag in tags:
        left = tagged_processes(tag)
        kill_all(left)
        assert not left, f"processes left behind: {left}"


def crashed(run: HeadRun, error: str) -> bool:
    return run.status == "exit" and run.returncode != 0 and error in run.output


def test_control_good_modules_run(grain_for) -> None:
    grain: Grain = grain_for("good_backendless")
    run = grain.head(tasks=8)
    assert run.status == "exit" and run.returncode == 0, run.output[-3000:]
    assert run.report["seconds"] < 1.0, run.report  # 8 calls at V = 4: two quick rounds
    assert run.report is not None and run.report["results"] == [f"call-{i}" for i in range(8)], run.output[-3000:]


@pytest.mark.parametrize(
    "module",
    [
        "chem_trio_nursery",  # a trio nursery runs the server (trio.run_process)
        "chem_anyio_process",  # anyio.open_process, watched by a task
        "chem_thread_subprocess",  # subprocess.Popen, waited on in a thread
        "seed_example",  # the documentation page's shape
        "good_one_job",  # one job at a time, a lock around the whole job
        "r09_slow_start",  # slow to start: Grain waits (the kit's default limit is the package's wait)
        "cloud_sdk_backendless",  # a sync SDK configured at import, run in threads
        "good_http_backendless",  # one httpx.AsyncClient, each call bounded
        "good_redis_threads",  # sync redis-py, every call in a worker thread
        "good_module_level_client",  # one HTTP client per process, kept at module level
    ],
)
def test_control_real_world_shapes_run(grain_for, module: str) -> None:
    """What the kit passes runs on Grain: 8 tasklets at V = 4, every result right."""
    backendless = module.endswith("backendless") or module.startswith(("good_redis", "good_module"))
    service = redis_service if "redis" in module else backendless
    grain: Grain = grain_for(module, service=service, **{TOKEN_ENV: TOKEN})
    if not backendless:
        grain.add_worker()
    run = grain.head(tasks=8, limit=15.0)
    assert run.status == "exit" and run.returncode == 0, run.output[-3000:]
    assert run.report is not None and run.report["results"] == [f"call-{i}" for i in range(8)], run.output[-3000:]


def test_rule_01_missing_config_crashes_the_head(grain_for) -> None:
    run = grain_for("r01_missing_config").head()
    assert crashed(run, "AttributeError"), run.output[-3000:]
    assert "GRAIN_SWORKER_CONFIG" in run.output


def test_rule_02_plain_async_def_crashes_the_head(grain_for) -> None:
    run = grain_for("r02_plain_async_def").head()
    assert crashed(run, "Error"), run.output[-3000:]
    assert re.search(r"(TypeError|AttributeError).*(__aenter__|asynchronous context manager|coroutine)", run.output)


def test_rule_03_int_name_loops_the_worker_and_hangs_the_head(grain_for) -> None:
    grain: Grain = grain_for("r03_int_name", service=False)
    grain.add_worker()
    run = grain.head(limit=HANG_LIMIT)
    cycles = grain.log("worker/worker.log").count("connecting to head")
    print(f"PROOF rule 3: head {run.status} after {run.seconds:.1f} s; worker connected {cycles} times")
    assert run.status == "hang", run.output[-3000:]
    assert cycles >= 5, grain.log("worker/worker.log")[-3000:]  # grain_run_sworker re-run again and again


def test_rule_04_path_field_crashes_the_head(grain_for) -> None:
    run = grain_for("r04_path_backendless").head()
    assert crashed(run, "TypeError"), run.output[-3000:]
    assert "PosixPath" in run.output


def test_rule_05_unexpected_field_crashes_the_head(grain_for) -> None:
    run = grain_for("r05_context_rejects_field").head()
    assert crashed(run, "TypeError"), run.output[-3000:]
    assert "unexpected keyword argument 'timeout'" in run.output


def test_rule_05_missing_setting_crashes_the_head(grain_for) -> None:
    run = grain_for("r05_missing_setting").head()  # the token is not in the head's environment
    assert crashed(run, "MissingSettingError"), run.output[-3000:]
    assert TOKEN_ENV in run.output


def test_rule_06_cleanup_after_yield_orphans_the_server(grain_for) -> None:
    grain: Grain = grain_for("r06_cleanup_after_yield", service=False)
    worker = grain.add_worker()
    run = grain.head()
    assert run.status == "exit" and run.returncode == 0, run.output[-3000:]
    servers = [p for p in tagged_processes(grain.tag) if "echo_server.py" in " ".join(p.cmdline())]
    assert len(servers) == 1 and servers[0].ppid() == worker.pid
    worker.send_signal(2)  # SIGINT: the worker leaves and cancels grain_run_sworker, as on FIN
    worker.wait(15)
    time.sleep(0.2)
    assert servers[0].is_running() and servers[0].status() != psutil.STATUS_ZOMBIE
    orphan_parent = servers[0].ppid()
    kill_all(servers)  # ended here, by pid: the fixture then checks that nothing else is left
    assert orphan_parent != worker.pid  # re-parented: an orphan (PPID 1 or a subreaper)


def test_rule_06_slow_shielded_cleanup_delays_the_head_exit(grain_for) -> None:
    fast = grain_for("good_backendless").head()
    slow = grain_for("r06_slow_cleanup").head()
    assert fast.returncode == 0 and slow.returncode == 0, slow.output[-3000:]
    assert slow.seconds - fast.seconds >= 0.8, (fast.seconds, slow.seconds)  # 1.2 s, less a loaded machine's noise


def test_rule_06_client_never_closed_leaves_its_sockets_open(grain_for) -> None:
    """An HTTP client never closed: its sockets stay open until the head exits, which then finds them unclosed;
    the same client closed in finally leaves none."""
    warn = {"PYTHONWARNINGS": "always::ResourceWarning"}
    never = grain_for("r06_client_never_closed").head(env=warn)
    closed = grain_for("good_http_backendless").head(env=warn)
    assert never.returncode == 0 and closed.returncode == 0, never.output[-3000:] + closed.output[-3000:]
    assert "ResourceWarning: unclosed <socket.socket" in never.output, never.output[-3000:]
    assert "unclosed" not in closed.output, closed.output[-3000:]


def test_rule_07_asyncio_code_crashes_the_head(grain_for) -> None:
    run = grain_for("r07_asyncio_sleep").head()
    assert crashed(run, "RuntimeError"), run.output[-3000:]
    assert "no running event loop" in run.output


def test_rule_07_blocking_call_serialises_the_tasklets(grain_for) -> None:
    """Unlike good_backendless (test_control_good_modules_run: 8 calls in well under a second)."""
    for module, seconds in (("r07_blocking_sleep", 0.15), ("r07_blocking_per_request", 0.2)):
        blocking = grain_for(module).head(tasks=8)
        assert blocking.returncode == 0, blocking.output[-3000:]
        # 8 calls at V=4 that each block: one after the other (>= 8 x seconds), not 2 rounds of 4 (~0.1 s)
        assert blocking.report["seconds"] >= 7 * seconds, blocking.report
        assert blocking.report["max_lag"] >= 0.9 * seconds, blocking.report  # the head's loop itself stood still


def test_rule_07_one_off_and_per_request_stalls_block_the_head(grain_for) -> None:
    """A sync token fetch on the first call, and a new HTTP client per call: the head's loop stalls."""
    first_call = grain_for("r07_first_call_stall").head(tasks=4)
    per_request = grain_for("r07_client_per_request").head(tasks=8)
    assert first_call.returncode == 0 and per_request.returncode == 0, per_request.output[-3000:]
    print(f"PROOF rule 7: head loop stalled {first_call.report['max_lag']} s (first call), "
          f"{per_request.report['max_lag']} s (client per request)")  # fmt: skip
    assert first_call.report["max_lag"] >= 0.8, first_call.report  # the 0.9 s token fetch, once
    assert per_request.report["max_lag"] >= 0.01, per_request.report  # an SSL context, built per call


def test_rule_07_asyncio_client_library_crashes_the_head(grain_for) -> None:
    """redis.asyncio under Grain's trio: the head dies at the instance's start."""
    run = grain_for("r07_asyncio_redis", service=redis_service).head()
    assert crashed(run, "RuntimeError"), run.output[-3000:]
    # On the head's main thread redis.asyncio gets as far as awaiting an asyncio future, which trio refuses.
    assert re.search(r"no current event loop|some other framework like asyncio", run.output), run.output[-3000:]


def test_rule_07_sync_client_library_on_the_loop_stalls_the_head_for_each_call(grain_for) -> None:
    """Sync redis-py on the loop: with the server busy for 300 ms, the head's loop stands still that long;
    the same client in worker threads keeps it running."""
    on_loop = grain_for("r07_sync_redis_on_loop", service=redis_service).head("busy_redis", tasks=8)
    threads = grain_for("good_redis_threads", service=redis_service).head("busy_redis", tasks=8)
    assert on_loop.returncode == 0 and threads.returncode == 0, on_loop.output[-3000:] + threads.output[-3000:]
    print(f"PROOF rule 7 (sync client library): head loop stalled {on_loop.report['max_lag']} s on the loop, "
          f"{threads.report['max_lag']} s in threads")  # fmt: skip
    assert on_loop.report["max_lag"] >= 0.2, on_loop.report
    assert threads.report["max_lag"] < 0.15, threads.report


def test_rule_08_rate_limited_service_fails_above_its_limit_not_at_it(grain_for) -> None:
    """A service that allows 2 requests in flight: at V = 4 tasklets fail with 429; at V = 2 all are right."""
    over = grain_for("r08_rate_limited", service=rate_limited_service)
    run = over.head(tasks=8, limit=HANG_LIMIT)
    print(f"PROOF rule 8 (rate limit): head {run.status} rc={run.returncode}; {run.report}")
    assert "429" in run.output, run.output[-3000:]
    at_limit = grain_for("r08_rate_limited", service=rate_limited_service)
    at_limit.write_config(capacity=2)
    right = at_limit.head(tasks=8)
    assert right.returncode == 0 and right.report["results"] == [f"call-{i}" for i in range(8)], right.output


def test_rule_08_retry_after_in_full_holds_the_tasklets(grain_for) -> None:
    """Above the service's limit, refused calls sleep the 30 s it asks for: 8 tasklets do not finish in 4 s."""
    run = grain_for("r08_retry_after_wait", service=rate_limited_service_retry_after).head(tasks=8, limit=HANG_LIMIT)
    print(f"PROOF rule 8 (Retry-After in full): head {run.status} after {run.seconds:.1f} s")
    assert run.status == "hang", run.output[-3000:]


def test_rule_13_no_call_limit_waits_forever_on_a_stalled_service(grain_for) -> None:
    """The service stops (SIGSTOP) with its connections open: without a limit the tasklet waits, with no error
    anywhere; with one (good_http_backendless, 0.5 s) it fails with a timeout at once, and Grain retries it."""
    unbounded = grain_for("r13_no_call_limit").head("stall", limit=HANG_LIMIT)
    bounded = grain_for("good_http_backendless", **{CALL_LIMIT_ENV: "0.5"}).head("stall", limit=HANG_LIMIT)
    print(f"PROOF rule 13: no limit: head {unbounded.status} after {unbounded.seconds:.1f} s; "
          f"limit: {bounded.output.count('ReadTimeout')} timeouts logged")  # fmt: skip
    assert unbounded.status == "hang" and "Timeout" not in unbounded.output, unbounded.output[-3000:]
    assert "ReadTimeout" in bounded.output, bounded.output[-3000:]


def test_rule_08_unlocked_client_fails_under_concurrent_tasklets(grain_for) -> None:
    # Replies take 50 ms, so that the 4 tasklets at V=4 surely wait on the one stream together
    # (with instant replies on loopback each call can finish before the next starts: seen once).
    run = grain_for("r08_no_lock", delay=0.05).head(tasks=8, limit=HANG_LIMIT)
    report = run.report
    busy = "BusyResourceError" in run.output
    print(
        f"PROOF rule 8: head {run.status} rc={run.returncode} after {run.seconds:.1f} s; {report}; "
        f"BusyResourceError={busy}"
    )
    ok = (
        run.status == "exit" and run.returncode == 0 and report and report["results"] == [f"call-{i}" for i in range(8)]
    )
    assert not ok, run.output[-3000:]
    assert "BusyResourceError" in run.output or run.status == "hang" or report, run.output[-3000:]


def test_rule_08_lock_per_request_fails_a_one_job_server_but_not_at_capacity_one(grain_for) -> None:
    grain: Grain = grain_for("r08_lock_per_request", service=False)
    grain.add_worker()
    run = grain.head(tasks=8, limit=3.0)
    print(f"PROOF rule 8 (one job at a time): head {run.status} rc={run.returncode}; {run.report}")
    assert not (run.status == "exit" and run.returncode == 0 and run.report and run.report["results"] == [
        f"call-{i}" for i in range(8)
    ]), run.output[-3000:]  # fmt: skip
    assert "busy" in run.output or run.status == "hang", run.output[-3000:]
    one = grain_for("r08_lock_per_request", service=False)
    one.write_config(capacity=1)
    one.add_worker(capacity=1)
    at_one = one.head(tasks=8)
    assert at_one.returncode == 0 and at_one.report["results"] == [f"call-{i}" for i in range(8)], at_one.output


def test_rule_09_unbounded_readiness_wait_hangs_worker_and_head(grain_for) -> None:
    grain: Grain = grain_for("r09_unbounded_wait", service=False)
    worker = grain.add_worker()
    run = grain.head(limit=HANG_LIMIT)
    assert run.status == "hang", run.output[-3000:]
    assert worker.poll() is None  # the worker is still waiting, with no error anywhere
    assert "Error" not in grain.log("worker/worker.log")


@pytest.mark.parametrize(
    ("module", "ending"), [("r10_empty_on_eof_backendless", "dead"), ("r10_empty_on_reset_backendless", "reset")]
)
def test_rule_10_empty_reply_for_a_dead_service_is_a_success(grain_for, module: str, ending: str) -> None:
    """The service exits (EOF), or resets its connections first: either way "" is recorded as the result."""
    run = grain_for(module).head(ending)
    assert run.status == "exit" and run.returncode == 0, run.output[-3000:]
    assert run.report == {"results": ["before", ""]}  # the dead service "answered" ""


def test_rule_11_gnaw_hands_the_token_to_the_next_head(grain_for) -> None:
    grain: Grain = grain_for("r11_env_token")
    first = grain.head("token", env={TOKEN_ENV: TOKEN})
    second = grain.head("token", env={TOKEN_ENV: ""})  # this head never saw the token
    assert first.report == {"results": [TOKEN]}, first.output[-3000:]
    assert second.report == {"results": [TOKEN]}, second.output[-3000:]


def test_rule_12_memory_without_cores_breaks_gnaw(grain_for) -> None:
    grain: Grain = grain_for("good_backendless")
    grain.write_config(extra="\n[worker.script]\nmemory = 4\n")
    run = grain.head(limit=HANG_LIMIT)
    panic = [line for line in grain.log("gnaw.log").splitlines() if "panic" in line][:1]
    print(f"PROOF rule 12: head {run.status} rc={run.returncode} after {run.seconds:.1f} s; gnaw: {panic}")
    assert run.status == "hang" or run.returncode != 0, run.output[-3000:]
    assert "panic" in grain.log("gnaw.log"), grain.log("gnaw.log")[-3000:]
