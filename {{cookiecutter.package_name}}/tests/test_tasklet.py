"""The package's own tasklet (``probe.TASKLET``) and client, run on the conformance kit's Grain-like harness.

The kit starts the sworker as Grain does (fields through msgpack, one shared
client); the tasklet then runs on top of it, V at a time, with ``GVAR.context``
set to that client as Grain sets it.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio
from grain import GVAR
from sworker_conformance.instance import msgpack_round_trip, running_client, running_instance
from sworker_conformance.plugin import LOOPS
from sworker_conformance.target import Target

from {{ cookiecutter.package_name }} import DEFAULT_CAPACITY, probe

pytestmark = pytest.mark.usefixtures("sworker_environment")


@pytest.mark.parametrize("loop", LOOPS)
async def test_the_tasklet_answers_right_through_the_shared_client_at_capacity(
    loop: str, sworker_target: Target
) -> None:
    arguments = [probe.example(i) for i in range(3 * DEFAULT_CAPACITY)]
    results: dict[int, Any] = {}
    async with running_instance(sworker_target) as instance:
        fields = msgpack_round_trip(instance.fields, sworker_target.module_name)
        async with running_client(sworker_target, fields) as client:
            limit = anyio.Semaphore(DEFAULT_CAPACITY)  # Grain runs at most V tasklets per instance

            async def tasklet(i: int) -> None:
                async with limit:
                    GVAR.context = client
                    results[i] = await probe.TASKLET.fn(arguments[i])

            async with anyio.create_task_group() as group:
                for i in range(len(arguments)):
                    group.start_soon(tasklet, i)
    assert sorted(results) == list(range(len(arguments)))
    for i, argument in enumerate(arguments):
        probe.check(argument, results[i])


def test_the_tasklet_outside_its_sworker_says_how_to_submit_it() -> None:
    async def outside() -> None:
        GVAR.context = None
        await probe.TASKLET.fn(probe.example(0))

    with pytest.raises(RuntimeError, match=r"specialized_type = '{{ cookiecutter.package_name }}\.the_sworker'"):
        trio.run(outside)
