"""Proof that an instance is your own: a MAC over its fields, made with a key only you can read.

Grain authenticates no worker: any process that reaches the head's listen address can register an
instance of this sworker type, and the head would send it tasklets and take its answers as
results. So ``grain_run_sworker`` signs the fields it yields (where the server is, and its
per-instance secret) with a key read from a file only you can read, and ``grain_context`` checks
the signature before it connects. An instance that cannot prove itself is never connected to: the
head says so once, loudly, and every tasklet placed on it fails with
:class:`StrangerInstanceError` (Grain then runs it again elsewhere, and drops that instance after
three failures).

The key is 32 random bytes in ``~/.config/{{ cookiecutter.package_name }}/instance.key``, created
(mode 0600, its folder 0700) by whichever of the head or a worker first needs it; cluster nodes
that share your home directory share it. ``{{ cookiecutter.package_name | upper }}_INSTANCE_KEY_FILE``
points elsewhere (e.g. a shared file system when home is not shared). A key file that others can
read, or that someone else owns, is refused, as ssh refuses such a private key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

KEY_FILE_ENV = "{{ cookiecutter.package_name | upper }}_INSTANCE_KEY_FILE"
DEFAULT_KEY_FILE = "~/.config/{{ cookiecutter.package_name }}/instance.key"
KEY_BYTES = 32
#: What the MAC covers is tagged, so a MAC made for something else never passes for an instance's.
DOMAIN = "{{ cookiecutter.package_name }} instance v1"

#: Addresses of strangers already reported: the head says it once per address.
_reported: set[str] = set()


class InstanceKeyError(RuntimeError):
    """The key file cannot be made, read or trusted."""


class StrangerInstanceError(PermissionError):
    """A tasklet was placed on an instance that could not prove it was started by you."""


def key_path() -> Path:
    return Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE).expanduser()


def load_key() -> bytes:
    """The key, created on first use; raises :class:`InstanceKeyError` saying what is wrong."""
    path = key_path()
    if not path.exists():
        _create(path)
    try:
        info = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise InstanceKeyError(f"cannot read the instance key {path}: {exc} (set {KEY_FILE_ENV})") from exc
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        raise InstanceKeyError(f"the instance key {path} is not a file of yours: remove it, or set {KEY_FILE_ENV}")
    if info.st_mode & 0o077:
        raise InstanceKeyError(
            f"the instance key {path} can be read by others (mode {stat.S_IMODE(info.st_mode):03o}): "
            f"run chmod 600 {path}"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES // 2:
        raise InstanceKeyError(f"the instance key {path} is not {KEY_BYTES} hex-encoded bytes: remove it to renew it")
    return key


def _create(path: Path) -> None:
    """Write a new key atomically: the head and several workers may start at once."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(KEY_BYTES) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(draft, path)  # fails if another process made it first: its key is the key
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    except OSError as exc:
        raise InstanceKeyError(f"cannot create the instance key {path}: {exc} (set {KEY_FILE_ENV})") from exc


def _message(host: object, port: object, secret: object) -> bytes:
    return json.dumps([DOMAIN, host, port, secret]).encode()


def _joining_name() -> str | None:
    """The instance's name, where the head gives it (``grain_compat`` sets ``GVAR.instance`` as it joins)."""
    from grain import GVAR

    try:
        name = GVAR.instance
    except LookupError:
        return None
    return name if isinstance(name, str) and name != "N/A" and not name.endswith("(local)") else None


def sign(host: str, port: int, secret: str) -> str:
    """The MAC ``grain_run_sworker`` yields beside the fields it covers."""
    return hmac.new(load_key(), _message(host, port, secret), hashlib.sha256).hexdigest()


def refusal(host: object, port: object, secret: object, mac: object) -> StrangerInstanceError | None:
    """None for an instance you started; else the error its tasklets raise (reported once, loudly)."""
    address = f"{host}:{port}"
    try:
        expected = hmac.new(load_key(), _message(host, port, secret), hashlib.sha256).hexdigest()
        proven = isinstance(mac, str) and hmac.compare_digest(mac.encode(), expected.encode())
        why = "its fields carry no valid MAC for your key"
    except (InstanceKeyError, TypeError, ValueError) as exc:
        proven, why = False, f"the head cannot check it: {exc}"
    if proven:
        return None
    if address not in _reported:
        _reported.add(address)
        logger.error(
            "REFUSED A STRANGER: a sworker instance at %s (%s) tried to join this head, but %s (key: %s). "
            "The head never connects to it: its tasklets fail and run again on your own instances. If it is yours, "
            "its worker used another key: give the head and the workers the same %s.",
            address,
            _joining_name() or f"{{ cookiecutter.package_name }}@{address}",
            why,
            key_path(),
            KEY_FILE_ENV,
        )
    return StrangerInstanceError(
        f"the sworker instance at {address} could not prove it was started by you ({why}); the head did not "
        "connect to it (see the head's log)"
    )
