"""A relay between the client and its server, so that the kit ends the connection on purpose.

A client meets a dead server in one of two ways: the peer's FIN (EOF: a read
returns ``b""``) or its RST (a reset connection raises). Which one comes after
a killed process is a race on loopback, so a check that kills the server gives
a different verdict from run to run. The kit therefore stands between the two:
while a dead-server scenario runs, every TCP connection the client makes is
redirected to this relay (``intercepting``), which connects to the real
destination and copies bytes both ways. ``cut("eof")`` then ends each relayed
connection with a FIN and keeps reading (so no reset follows), ``cut("reset")``
with an RST (SO_LINGER 0); new connections are refused from then on. The real
server stays up, whatever runs it (a nursery, a thread, another machine), and
the module's settings, read at import or not, point where they always did.

The relay also plays a slow server and a stalled one: ``delay_replies(s)`` holds
every reply back ``s`` seconds (a sync call on the event loop then blocks it
that long, whatever the network's speed), and ``stall()`` keeps every
connection open and passes requests on, but sends nothing back (a hung job, a
SIGSTOPped server, a full disk): only the client's own time limit ends a call.
"""

from __future__ import annotations

import contextvars
import errno
import ipaddress
import queue
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

Address = tuple[str, int]

#: Set in the tasks that act for the client (grain_context and the probe calls): their connections
#: are relayed. Connections from any other thread are relayed too (a sync SDK's own threads).
CLIENT_SIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("sworker_kit_client_side", default=False)

_ORIGINAL_CONNECT = socket.socket.connect
_ORIGINAL_CONNECT_EX = socket.socket.connect_ex
_active: Relay | None = None
_patch_lock = threading.Lock()
CHUNK = 65536
COMMAND_TIMEOUT = 5.0


def _key(address: Any) -> Address:
    """(ip, port) with IPv4-mapped IPv6 addresses written as IPv4."""
    host, port = address[0], address[1]
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host, port
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip), port


class _Pair:
    """One relayed connection: the client's side (accepted here) and the upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket, client_address: Address) -> None:
        self.client = client
        self.upstream: socket.socket | None = upstream
        self.client_address = client_address
        self.connected = False
        self.to_client = b""
        self.to_upstream = b""
        self.client_eof = False
        self.upstream_eof = False
        self.cut = False
        #: Replies held back until their time (``Relay.delay_replies``): (when, bytes).
        self.delayed: deque[tuple[float, bytes]] = deque()


class Relay:
    """Relays redirected connections (in a thread of its own) until ``cut``; see the module's docstring."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._listeners: dict[int, socket.socket] = {}
        self._expected: dict[Address, Any] = {}
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], threading.Event, list[Any]]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._running = False
        self.loop_thread: int | None = None
        #: Connections relayed, and bytes the client sent through them (before the cut).
        self.connections = 0
        self.bytes_from_client = 0
        #: The client's side of every connection relayed (its local address): whose sockets outlive the client.
        self.client_addresses: list[Address] = []
        #: Seconds each reply is held back; and whether replies are dropped (a stalled server).
        self.reply_delay = 0.0
        self.stalled = False
        #: The first fault in the relay's thread (the kit reports it: the scenario's verdict would not hold).
        self.error: Exception | None = None

    # -- set-up and the client's side ---------------------------------------------------------

    def start(self) -> Relay:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                listener = socket.socket(family, socket.SOCK_STREAM)
                listener.bind((host, 0))
            except OSError:
                continue  # no IPv6 loopback here: IPv6 clients use the IPv4-mapped address
            listener.listen(64)
            listener.setblocking(False)
            self._listeners[family] = listener
            self._selector.register(listener, selectors.EVENT_READ, self._accept)
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="sworker-kit-relay", daemon=True)
        self._thread.start()
        return self

    def address_for(self, family: int) -> Any:
        if family in self._listeners:
            return self._listeners[family].getsockname()
        port = self._listeners[socket.AF_INET].getsockname()[1]
        return ("::ffff:127.0.0.1", port, 0, 0)

    def redirect(self, sock: socket.socket, address: Any) -> Any:
        """Where ``sock`` should connect instead of ``address`` (``address`` itself if not relayed)."""
        if not self._running or sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return address
        if threading.get_ident() == self.loop_thread and not CLIENT_SIDE.get():
            return address  # the module's own tasks (e.g. its server's health check), not the client
        if not isinstance(address, tuple) or len(address) < 2:
            return address
        if any(_key(address) == _key(listener.getsockname()) for listener in self._listeners.values()):
            return address
        destination = address
        try:
            ipaddress.ip_address(str(address[0]).split("%")[0])
        except ValueError:  # a host name: resolve it as connect() would
            destination = socket.getaddrinfo(address[0], address[1], sock.family, socket.SOCK_STREAM)[0][4]
        if sock.getsockname()[1] == 0:
            if sock.family == socket.AF_INET:
                sock.bind(("127.0.0.1", 0))
            else:
                sock.bind(("::1", 0, 0, 0) if socket.AF_INET6 in self._listeners else ("::ffff:127.0.0.1", 0, 0, 0))
        with self._lock:
            self._expected[_key(sock.getsockname())] = destination
        return self.address_for(sock.family)

    # -- what the kit does --------------------------------------------------------------------

    def cut(self, ending: str) -> list[Address]:
        """End every relayed connection with ``ending`` ("eof" or "reset"); refuse new ones.

        Returns the client-side addresses of the connections that were open.
        """
        result: list[Address] = self._call(lambda: self._cut(ending))
        return result

    def delay_replies(self, seconds: float) -> None:
        """Hold every reply from now on back ``seconds`` before the client gets it (a slow server)."""
        self._call(lambda: setattr(self, "reply_delay", seconds))

    def stall(self) -> None:
        """From now on pass requests on, keep every connection open, and send nothing back (a stalled server)."""

        def stall_now() -> None:
            self.stalled = True
            for pair in self._pairs:
                pair.to_client = b""
                pair.delayed.clear()

        self._call(stall_now)

    def close(self) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive():
            try:
                self._call(self._close_all)
            except TimeoutError:
                pass
            self._running = False
            self._wake()
            self._thread.join(COMMAND_TIMEOUT)
        self._thread = None
        self._wake_read.close()
        self._wake_write.close()
        self._selector.close()

    def _call(self, function: Callable[[], Any]) -> Any:
        done, result = threading.Event(), list[Any]()
        self._commands.put((function, done, result))
        self._wake()
        if not done.wait(COMMAND_TIMEOUT):
            raise TimeoutError(f"the kit's relay did not answer within {COMMAND_TIMEOUT:g} s")
        if result and isinstance(result[0], Exception):
            raise result[0]
        return result[0] if result else None

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass

    # -- the relay's thread -------------------------------------------------------------------

    def _run(self) -> None:
        while self._running:
            for key, events in self._selector.select(self._until_next_reply()):
                if key.data is None:
                    self._drain_commands()
                else:
                    try:
                        key.data(key.fileobj, events)
                    except Exception as exc:  # never let the relay's thread die: record it
                        self.error = self.error or exc
            try:
                self._release_delayed()
            except Exception as exc:
                self.error = self.error or exc
        self._drain_commands()

    def _until_next_reply(self) -> float:
        """How long the selector may wait: until the next delayed reply is due, at most 0.5 s."""
        due = [pair.delayed[0][0] for pair in self._pairs if pair.delayed]
        return max(0.0, min([0.5, *(when - time.monotonic() for when in due)]))

    def _release_delayed(self) -> None:
        now = time.monotonic()
        for pair in list(self._pairs):
            released = False
            while pair.delayed and pair.delayed[0][0] <= now:
                pair.to_client += pair.delayed.popleft()[1]
                released = True
            if released:
                self._update(pair)

    def _drain_commands(self) -> None:
        try:
            while self._wake_read.recv(CHUNK):
                pass
        except OSError:
            pass
        while True:
            try:
                function, done, result = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result.append(function())
            except Exception as exc:  # a fault of the kit's own: the caller raises it
                result.append(exc)
            finally:
                done.set()

    def _accept(self, listener: socket.socket, events: int) -> None:
        try:
            client, peer = listener.accept()
        except OSError:
            return
        client.setblocking(False)
        with self._lock:
            destination = self._expected.pop(_key(peer), None)
        if destination is None:
            client.close()  # not one the kit redirected
            return
        ipv6 = len(destination) == 4 or ":" in str(destination[0])
        upstream = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        pair = _Pair(client, upstream, _key(peer))
        self._pairs.append(pair)
        self.connections += 1
        self.client_addresses.append(pair.client_address)
        code = _ORIGINAL_CONNECT_EX(upstream, destination)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._abort(pair)
            return
        self._selector.register(upstream, selectors.EVENT_WRITE, self._on_upstream(pair))
        self._selector.register(client, selectors.EVENT_READ, self._on_client(pair))

    def _on_upstream(self, pair: _Pair) -> Callable[[socket.socket, int], None]:
        """The selector's callback for ``pair``'s upstream socket."""
        return lambda sock, events: self._upstream_event(pair, events)

    def _on_client(self, pair: _Pair) -> Callable[[socket.socket, int], None]:
        """The selector's callback for ``pair``'s client socket."""
        return lambda sock, events: self._client_event(pair, events)

    def _upstream_event(self, pair: _Pair, events: int) -> None:
        upstream = pair.upstream
        if upstream is None:
            return
        if not pair.connected:
            if upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._abort(pair)
                return
            pair.connected = True
        if events & selectors.EVENT_READ:
            data = self._receive(pair, upstream)
            if data is None:
                return
            if data and self.stalled:
                pass  # a stalled server: nothing comes back
            elif data and self.reply_delay:
                pair.delayed.append((time.monotonic() + self.reply_delay, data))
            elif data:
                pair.to_client += data
            else:
                pair.upstream_eof = True
        if events & selectors.EVENT_WRITE and pair.to_upstream:
            sent = self._send(pair, upstream, pair.to_upstream)
            if sent is None:
                return
            pair.to_upstream = pair.to_upstream[sent:]
        self._update(pair)

    def _client_event(self, pair: _Pair, events: int) -> None:
        client = pair.client
        if events & selectors.EVENT_READ:
            data = self._receive(pair, client)
            if data is None:
                return
            if not data:
                pair.client_eof = True
                if pair.cut:  # the client closed its end after the cut: done
                    self._forget(pair)
                    return
            elif not pair.cut:
                pair.to_upstream += data
                self.bytes_from_client += len(data)
        if events & selectors.EVENT_WRITE and pair.to_client and not pair.cut:
            sent = self._send(pair, client, pair.to_client)
            if sent is None:
                return
            pair.to_client = pair.to_client[sent:]
        self._update(pair)

    def _receive(self, pair: _Pair, sock: socket.socket) -> bytes | None:
        """What ``sock`` has for the other side (``b""``: EOF); None if it failed, and the pair is aborted."""
        try:
            return sock.recv(CHUNK)
        except OSError:
            self._abort(pair)
            return None

    def _send(self, pair: _Pair, sock: socket.socket, data: bytes) -> int | None:
        """How much of ``data`` ``sock`` took; None if it failed, and the pair is aborted."""
        try:
            return sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self._abort(pair)
            return None

    def _update(self, pair: _Pair) -> None:
        """Pass on EOFs once the buffers are flushed; watch for what each socket can do next."""
        if pair.cut:
            return
        upstream = pair.upstream
        if pair.client_eof and not pair.to_upstream and upstream is not None and pair.connected:
            _shutdown(upstream, socket.SHUT_WR)
        if pair.upstream_eof and not pair.to_client and not pair.delayed and not self.stalled:
            _shutdown(pair.client, socket.SHUT_WR)  # (a stalled server's connections stay open)
        if pair.client_eof and pair.upstream_eof and not pair.to_client and not pair.delayed and not pair.to_upstream:
            self._forget(pair)
            return
        client_events = (0 if pair.client_eof else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if pair.to_client else 0
        )
        upstream_events = (0 if pair.upstream_eof or not pair.connected else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if pair.to_upstream or not pair.connected else 0
        )
        _modify(self._selector, pair.client, client_events, self._on_client(pair))
        if upstream is not None:
            _modify(self._selector, upstream, upstream_events, self._on_upstream(pair))

    def _cut(self, ending: str) -> list[Address]:
        for listener in self._listeners.values():
            _unregister(self._selector, listener)
            listener.close()
        open_addresses = []
        for pair in list(self._pairs):
            pair.cut = True
            pair.to_client = b""
            if pair.upstream is not None:
                _unregister(self._selector, pair.upstream)
                pair.upstream.close()
                pair.upstream = None
            open_addresses.append(pair.client_address)
            if ending == "reset":
                _unregister(self._selector, pair.client)
                try:
                    pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                pair.client.close()
                self._pairs.remove(pair)
            else:  # a FIN; then read and drop what the client sends, so that no reset follows
                _shutdown(pair.client, socket.SHUT_WR)
                _modify(self._selector, pair.client, selectors.EVENT_READ, self._on_client(pair))
        return open_addresses

    def _abort(self, pair: _Pair) -> None:
        """The upstream connection failed: reset the client's, as a refused or broken connection would."""
        try:
            pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._forget(pair)

    def _forget(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is not None:
                _unregister(self._selector, sock)
                sock.close()
        pair.upstream = None
        if pair in self._pairs:
            self._pairs.remove(pair)

    def _close_all(self) -> None:
        for pair in list(self._pairs):
            self._forget(pair)
        for listener in self._listeners.values():
            _unregister(self._selector, listener)
            listener.close()
        self._listeners.clear()


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


def _unregister(selector: selectors.BaseSelector, sock: socket.socket) -> None:
    try:
        selector.unregister(sock)
    except (KeyError, ValueError, OSError):
        pass


def _modify(selector: selectors.BaseSelector, sock: socket.socket, events: int, callback: Any) -> None:
    if sock.fileno() < 0:
        return
    try:
        registered = selector.get_key(sock)
    except (KeyError, ValueError):
        registered = None
    if not events:
        if registered is not None:
            _unregister(selector, sock)
        return
    if registered is None:
        selector.register(sock, events, callback)
    elif registered.events != events:
        selector.modify(sock, events, callback)


def _connect(sock: socket.socket, address: Any) -> Any:
    relay = _active
    return _ORIGINAL_CONNECT(sock, relay.redirect(sock, address) if relay else address)


def _connect_ex(sock: socket.socket, address: Any) -> Any:
    relay = _active
    return _ORIGINAL_CONNECT_EX(sock, relay.redirect(sock, address) if relay else address)


@contextmanager
def redirecting(relay: Relay, loop_thread: int) -> Iterator[Relay]:
    """Redirect every TCP connect of the client's side to ``relay`` for the block."""
    global _active
    relay.loop_thread = loop_thread
    with _patch_lock:
        _active = relay
        socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
    try:
        yield relay
    finally:
        stop_redirecting(relay)


def stop_redirecting(relay: Relay) -> None:
    """Connect as usual again, if ``relay`` is still the one redirected to (the pytest thread calls it
    too, when it stops waiting for a run: a late call from that run's thread must not end a later one's)."""
    global _active
    with _patch_lock:
        if _active is not relay:
            return
        _active = None
        for name in ("connect", "connect_ex"):
            if name in socket.socket.__dict__:
                delattr(socket.socket, name)


@contextmanager
def intercepting(loop_thread: int) -> Iterator[Relay]:
    """A running relay, with every TCP connect of the client's side redirected to it, for the block."""
    relay = Relay().start()
    try:
        with redirecting(relay, loop_thread):
            yield relay
    finally:
        relay.close()


def client_endings(addresses: list[Address]) -> dict[Address, str]:
    """What the client's sockets at ``addresses`` show now: "open", "eof" (CLOSE_WAIT) or "reset" (gone)."""
    states = {}
    for connection in psutil.Process().net_connections(kind="tcp"):
        if connection.laddr:
            states[_key(connection.laddr)] = connection.status
    endings = {}
    for address in addresses:
        status = states.get(address)
        if status is None or status == psutil.CONN_CLOSE:
            endings[address] = "reset"
        elif status == psutil.CONN_CLOSE_WAIT:
            endings[address] = "eof"
        else:
            endings[address] = "open"
    return endings


def still_open(addresses: list[Address]) -> list[Address]:
    """Which of the client sockets at ``addresses`` this process still holds open (a socket closed is gone)."""
    wanted = set(addresses)
    return sorted(
        {
            _key(connection.laddr)
            for connection in psutil.Process().net_connections(kind="tcp")
            if connection.laddr and _key(connection.laddr) in wanted
        }
    )


def wait_for_endings(addresses: list[Address], seconds: float = 1.0) -> dict[Address, str]:
    """The client sockets' endings once none is "open" any more (normally at once), or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        seen = client_endings(addresses)
        if "open" not in seen.values() or time.monotonic() > deadline:
            return seen
        time.sleep(0.005)
