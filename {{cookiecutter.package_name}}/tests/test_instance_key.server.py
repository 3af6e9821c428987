"""The instance key and MAC: only an instance you started is connected to (``instance_key``)."""

from __future__ import annotations

import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import instance_key
from {{ cookiecutter.package_name }}.instance_key import (
    KEY_FILE_ENV,
    InstanceKeyError,
    StrangerInstanceError,
    load_key,
    refusal,
    sign,
)
from {{ cookiecutter.package_name }}.tasklet import current_client


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / ".config" / "pkg" / "instance.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    monkeypatch.setattr(instance_key, "_reported", set())
    return path


def test_the_key_is_created_on_first_use_readable_by_you_alone(key_file: Path) -> None:
    with ThreadPoolExecutor(8) as pool:  # a head and workers starting at once agree on one key
        keys = set(pool.map(lambda _: load_key(), range(32)))
    assert len(keys) == 1 and len(keys.pop()) == instance_key.KEY_BYTES
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert [p.name for p in key_file.parent.iterdir()] == ["instance.key"]  # no draft left


def test_a_key_others_can_read_is_refused(key_file: Path) -> None:
    load_key()
    key_file.chmod(0o644)
    with pytest.raises(InstanceKeyError, match=r"can be read by others \(mode 644\): run chmod 600"):
        load_key()
    with pytest.raises(InstanceKeyError, match="can be read by others"):
        sign("127.0.0.1", 1, "s")


def test_your_instance_passes_and_any_change_to_its_fields_fails(key_file: Path) -> None:
    mac = sign("127.0.0.1", 4000, "secret")
    assert refusal("127.0.0.1", 4000, "secret", mac) is None
    for host, port, secret, forged in [
        ("127.0.0.2", 4000, "secret", mac),  # pointed at another server
        ("127.0.0.1", 4001, "secret", mac),
        ("127.0.0.1", 4000, "other", mac),
        ("127.0.0.1", 4000, "secret", "0" * 64),
        ("127.0.0.1", 4000, "secret", None),
        ("127.0.0.1", 4000, "secret", mac.upper()),
    ]:
        assert isinstance(refusal(host, port, secret, forged), StrangerInstanceError)


def test_another_key_is_a_stranger_said_once_per_address(
    key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "someone-else.key"))
    theirs = sign("10.0.0.9", 4000, "s")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    with caplog.at_level(logging.WARNING):
        refused = [refusal("10.0.0.9", 4000, "s", theirs) for _ in range(3)]
    assert all(isinstance(error, StrangerInstanceError) for error in refused)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "REFUSED A STRANGER" in record.getMessage()
    assert "10.0.0.9:4000" in record.getMessage() and "{{ cookiecutter.package_name }}@10.0.0.9:4000" in record.getMessage()


def test_a_tasklet_on_a_refused_instance_raises_its_error(key_file: Path) -> None:
    from grain import GVAR

    error = refusal("10.0.0.9", 4000, "s", "forged")
    assert error is not None
    GVAR.context = error
    try:
        with pytest.raises(StrangerInstanceError, match="could not prove it was started by you"):
            current_client()
    finally:
        GVAR.context = None


def test_the_head_refuses_rather_than_crashes_when_it_cannot_read_its_key(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not hex\n")
    os.chmod(key_file, 0o600)
    refused = refusal("127.0.0.1", 4000, "s", "0" * 64)
    assert isinstance(refused, StrangerInstanceError) and "the head cannot check it" in str(refused)
