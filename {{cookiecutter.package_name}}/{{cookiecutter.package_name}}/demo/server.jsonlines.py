"""The demo server, JSON lines over TCP: a stand-in for your own (replace ``SERVER_COMMAND`` in the_sworker).

It speaks JSON lines over TCP and serves only clients that first present the
per-instance secret, which it reads from the environment, never from its
command line (where ``ps`` would show it to every user of the node).
It runs in its own process, so it may use any framework; this one uses the
standard library's threaded socketserver, which starts in a few milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import socket
import socketserver
import sys
import threading
import time
from typing import Any

#: The same name as ``the_sworker.SECRET_ENV``: a stand-in does not import the sworker.
SECRET_ENV = "{{ cookiecutter.package_name | upper }}_SERVER_SECRET"
#: A request line (its newline included) may be this long; a longer one closes the connection.
MAX_LINE_BYTES = 64 * 1024
#: Seconds a new connection has to present the secret before it is closed.
AUTH_TIMEOUT = 5.0
#: Milliseconds of simulated work per request (default 0), to show what Capacity buys.
DELAY_ENV = "{{ cookiecutter.package_name | upper }}_DEMO_DELAY_MS"


def answer(request: dict[str, Any], work_seconds: float = 0.0) -> dict[str, Any]:
    """The reply to one authenticated request, after ``work_seconds`` of simulated work."""
    if work_seconds:
        # Sleeps in this connection's thread only: the server's other connections go on meanwhile,
        # as a server that runs requests concurrently (HTTP, a database, several GPUs) would.
        time.sleep(work_seconds)
    op = request.get("op")
    if op == "square":
        x = request.get("x")
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            return {"error": f"square needs a number, got {x!r}"}
        return {"result": x * x}
    if op == "ping":
        return {"result": "pong"}
    return {"error": f"unknown op {op!r}"}


class ClientHandler(socketserver.StreamRequestHandler):
    """Serves one connection until it closes; refuses it unless it starts with the secret.

    Whoever reaches the port may connect, so nothing is held for a stranger: a
    line longer than ``MAX_LINE_BYTES`` closes the connection unread, and so
    does a connection that has not presented the secret within the server's
    ``auth_timeout`` (one deadline for the whole greeting, however slowly it trickles in).
    """

    server: DemoServer
    disable_nagle_algorithm = True  # a reply leaves at once, not after the next request
    authenticated = False

    def handle(self) -> None:
        deadline = threading.Timer(self.server.auth_timeout, self._close_unless_authenticated)
        deadline.daemon = True
        deadline.start()
        try:
            self._serve()
        finally:
            deadline.cancel()

    def _close_unless_authenticated(self) -> None:
        if not self.authenticated:
            with contextlib.suppress(OSError):  # closed meanwhile
                self.connection.shutdown(socket.SHUT_RDWR)  # the pending read returns: the handler ends

    def _serve(self) -> None:
        while line := self.rfile.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES:
                return
            try:
                request = json.loads(line)
            except ValueError:
                return
            if not isinstance(request, dict):
                return
            if not self.authenticated:
                offered = str(request.get("secret", "")) if request.get("op") == "hello" else ""
                self.authenticated = hmac.compare_digest(offered.encode(), self.server.secret.encode())
                reply = {"result": "hello"} if self.authenticated else {"error": "unauthenticated"}
            else:
                reply = answer(request, self.server.work_seconds)
            self.wfile.write(json.dumps({"id": request.get("id"), **reply}).encode() + b"\n")
            if not self.authenticated:
                return


class DemoServer(socketserver.ThreadingTCPServer):
    """One thread per connection; the head's client opens one per call in flight (it keeps them in a pool).

    ``work_seconds`` is each request's simulated work (from ``DELAY_ENV``).
    """

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], secret: str, auth_timeout: float = AUTH_TIMEOUT, work_seconds: float = 0.0
    ) -> None:
        self.secret = secret
        self.auth_timeout = auth_timeout
        self.work_seconds = work_seconds
        super().__init__(address, ClientHandler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-timeout", type=float, default=AUTH_TIMEOUT, help="seconds to present the secret")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        print(f"demo server: set {SECRET_ENV} to the per-instance secret", file=sys.stderr)
        return 2
    delay = os.environ.get(DELAY_ENV, "").strip() or "0"
    try:
        work_seconds = float(delay) / 1000
    except ValueError:
        work_seconds = -1.0
    if not 0 <= work_seconds < float("inf"):
        print(f"demo server: {DELAY_ENV}={delay!r} is not a number of milliseconds >= 0", file=sys.stderr)
        return 2
    with DemoServer((args.host, args.port), secret, args.auth_timeout, work_seconds) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
