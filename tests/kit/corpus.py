"""The corpus's verdicts: which rule each module breaks (None: conformant), and how to exercise it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE = "tests.kit.sworkers"
CONFIGS = Path(__file__).resolve().parent / "configs"
PROBE = f"{PACKAGE}._parts:probe"
SERVICE = f"{PACKAGE}._parts:echo_service"
SERVICE_WITH_TOKEN = f"{PACKAGE}._parts:echo_service_with_token"
REDIS = f"{PACKAGE}._parts:redis_service"
RATE_LIMITED = f"{PACKAGE}._parts:rate_limited_service"
RATE_LIMITED_RETRY_AFTER = f"{PACKAGE}._parts:rate_limited_service_retry_after"


@dataclass(frozen=True)
class Case:
    module: str
    rule: int | None
    environment: str = ""
    config: str = ""
    probe: str = PROBE
    capacity: int = 0

    @property
    def dotted(self) -> str:
        return self.module if "." in self.module else f"{PACKAGE}.{self.module}"

    @property
    def config_path(self) -> Path | None:
        return CONFIGS / self.config if self.config else None

    @property
    def id(self) -> str:
        if self.config:
            return f"{self.module}-{self.config}"
        return f"{self.module}-V{self.capacity}" if self.capacity else self.module


GOOD = [
    Case("good_server", None),
    Case("good_backendless", None, SERVICE),
    Case("grain.local_sworker", None, probe=""),
    Case("good_server", None, config="good.toml"),
    # Shapes sworker authors write: each server run a different way, an SDK configured at import,
    # the documentation's own example, a one-job-at-a-time server, a server slow to start.
    Case("chem_trio_nursery", None),
    Case("chem_anyio_process", None),
    Case("chem_thread_subprocess", None),
    Case("cloud_sdk_backendless", None, SERVICE_WITH_TOKEN),
    Case("seed_example", None),
    Case("good_one_job", None),
    Case("r08_lock_per_request", None, capacity=1),  # one job at a time is right when V = 1
    Case("r09_slow_start", None),
    # Real client libraries: an HTTP client made once, a sync client library in worker threads, an HTTP
    # client kept at module level (one per process: fine on Grain), a rate-limited service at its limit.
    Case("good_http_backendless", None, SERVICE),
    Case("good_redis_threads", None, REDIS),
    Case("good_module_level_client", None, SERVICE),
    Case("r08_rate_limited", None, RATE_LIMITED, capacity=2),  # V at most what the service allows
]

BROKEN = [
    Case("r01_missing_config", 1, SERVICE),
    Case("r01_config_not_dict", 1),
    Case("r01_unknown_key", 1, SERVICE),
    Case("r01_backendless_string", 1),
    Case("r02_plain_async_def", 2, SERVICE),
    Case("r02_required_args", 2),
    Case("r02_context_async_generator", 2),
    Case("r03_not_dict", 3),
    Case("r03_no_name", 3),
    Case("r03_int_name", 3),
    Case("r03_empty_name", 3),
    Case("r03_glob_name", 3),
    Case("r03_duplicate_name", 3),
    Case("r03_stype", 3),
    Case("r04_set", 4),
    Case("r04_tuple", 4),
    Case("r04_bigint", 4),
    Case("r04_int_keys", 4),
    Case("r04_path_backendless", 4, SERVICE),
    Case("r05_context_rejects_field", 5, SERVICE),
    Case("r05_context_raises", 5),
    Case("r05_missing_setting", 5, SERVICE),  # the token is missing from the environment
    Case("r06_cleanup_after_yield", 6),
    Case("r06_slow_cleanup", 6, SERVICE),
    Case("r06_leaked_socket", 6),
    Case("r06_cleanup_30s", 6),
    Case("r06_client_never_closed", 6, SERVICE),
    Case("r06_popen_cleanup_after_yield", 6),
    Case("r07_asyncio_sleep", 7, SERVICE),
    Case("r07_asyncio_open_connection", 7),
    Case("r07_blocking_sleep", 7, SERVICE),
    Case("r07_blocking_per_request", 7, SERVICE),
    Case("r07_first_call_stall", 7, SERVICE),
    Case("r07_client_per_request", 7, SERVICE),
    Case("r07_blocks_for_good", 7, SERVICE),
    Case("r07_small_block_per_request", 7, SERVICE, capacity=1),  # steady: the same line in every call
    Case("r07_sync_redis_on_loop", 7, REDIS),  # quick on loopback: the kit's slow round shows it
    Case("r07_asyncio_redis", 7, REDIS),
    Case("r08_no_lock", 8, SERVICE),
    Case("r08_no_lock_server", 8),
    Case("r08_lock_per_request", 8),
    Case("r08_rate_limited", 8, RATE_LIMITED),  # V = 4 over a service that allows 2 in flight
    Case("r08_retry_after_wait", 8, RATE_LIMITED_RETRY_AFTER),
    Case("r09_unbounded_wait", 9),
    Case("r09_never_ready", 9),
    Case("r10_empty_on_eof", 10),
    Case("r10_empty_on_eof_backendless", 10, SERVICE),
    Case("r10_empty_on_reset", 10),
    Case("r10_empty_on_reset_backendless", 10, SERVICE),
    Case("r11_env_token", 11, SERVICE_WITH_TOKEN),
    Case("r11_fixed_credential", 11),
    Case("r13_no_call_limit", 13, SERVICE),
    Case("good_server", 12, config="cores_in_res.toml"),
    Case("good_server", 12, config="token_in_res.toml"),
    Case("good_server", 12, config="capacity_zero.toml"),
    Case("good_backendless", 12, SERVICE, config="memory_without_cores.toml"),
    Case("good_backendless", 12, SERVICE, config="py_path.toml"),
]
