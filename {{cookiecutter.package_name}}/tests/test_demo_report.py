"""How the demo explains a head that stopped: the one Grain crash users meet names the lost instance."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.demo.batch import _head_crash
from {{ cookiecutter.package_name }}.demo.watch import Tally

INSTANCE = "{{ cookiecutter.package_name }}@127.0.0.1:4242"


def raised_in_remote_exer(key: object) -> KeyError:
    """A KeyError whose traceback ends in Grain's remote_exer.py, _run_task(), as Grain 0.17's does."""
    code = compile("def _run_task(fnd, key):\n    return fnd[key]\n", "remote_exer.py", "exec")
    namespace: dict[str, object] = {}
    exec(code, namespace)
    with pytest.raises(KeyError) as raised:
        namespace["_run_task"]({}, key)  # type: ignore[operator]
    return raised.value


def test_grains_crash_on_a_dropped_instance_names_it_and_its_last_error() -> None:
    tally = Tally()
    tally.error(INSTANCE, ConnectionError(f"lost the connection to the server at {INSTANCE}"))
    message = _head_crash(raised_in_remote_exer(INSTANCE), tally)
    assert message.startswith(f"the Grain head stopped with KeyError: '{INSTANCE}' in remote_exer.py, _run_task()")
    assert f"as it dropped the sworker instance {INSTANCE} it had lost" in message
    assert f"1 tasklet error(s) on {INSTANCE}, the last: ConnectionError: lost the connection" in message


def test_other_keyerrors_in_grain_point_to_the_readme() -> None:
    message = _head_crash(raised_in_remote_exer(7), Tally())
    assert message.startswith("the Grain head stopped with KeyError: 7 in remote_exer.py, _run_task()")
    assert "Cores/Node" in message and "Troubleshooting" in message
