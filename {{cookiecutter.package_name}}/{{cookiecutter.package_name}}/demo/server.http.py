"""The demo server, HTTP: a stand-in for your own (replace ``SERVER_COMMAND`` in the_sworker).

It speaks HTTP/1.1 with keep-alive and serves only requests that carry the
per-instance secret as ``Authorization: Bearer <secret>``, which it reads from the
environment, never from its command line (where ``ps`` would show it to every user
of the node). ``GET /health`` answers 200; ``POST /square`` with ``{"x": 3}``
answers ``{"result": 9}``; errors are ``{"error": "..."}`` with a 4xx status.
It runs in its own process, so it may use any framework; this one uses the
standard library's threaded HTTP server, which starts in a few milliseconds.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The same name as ``the_sworker.SECRET_ENV``: a stand-in does not import the sworker.
SECRET_ENV = "{{ cookiecutter.package_name | upper }}_SERVER_SECRET"
#: Milliseconds of simulated work per call (each POST; default 0), to show what Capacity buys.
DELAY_ENV = "{{ cookiecutter.package_name | upper }}_DEMO_DELAY_MS"
#: A request body may be this long; a longer one is refused (413) unread.
MAX_BODY_BYTES = 64 * 1024
#: Seconds a new connection has to send its first request with the secret before it is closed.
AUTH_TIMEOUT = 5.0


def answer(path: str, params: object) -> tuple[int, dict[str, Any]]:
    """The status and reply of one authenticated ``POST <path>``."""
    if path != "/square":
        return 404, {"error": f"unknown op {path.lstrip('/')!r}"}
    x = params.get("x") if isinstance(params, dict) else None
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return 400, {"error": f"square needs a number, got {x!r}"}
    return 200, {"result": x * x}


class Handler(BaseHTTPRequestHandler):
    """Serves one connection, request after request, until it closes.

    Whoever reaches the port may connect, so nothing is held for a stranger: the token
    is checked before a body is read (a refused request's body is never read, and its
    connection is closed), a body over ``MAX_BODY_BYTES`` is refused unread, and a
    connection that has not sent an authenticated request within the server's
    ``auth_timeout`` is closed (one deadline, however slowly its bytes trickle in).
    """

    server: DemoServer
    protocol_version = "HTTP/1.1"  # keep-alive: the client sends call after call on one connection
    disable_nagle_algorithm = True  # a reply's headers and body leave at once
    authenticated = False

    def handle(self) -> None:
        deadline = threading.Timer(self.server.auth_timeout, self._close_unless_authenticated)
        deadline.daemon = True
        deadline.start()
        try:
            super().handle()
        finally:
            deadline.cancel()

    def _close_unless_authenticated(self) -> None:
        if not self.authenticated:
            with contextlib.suppress(OSError):  # closed meanwhile
                self.connection.shutdown(socket.SHUT_RDWR)  # the pending read returns: the handler ends

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/health":
            self._reply(200, {"result": "ok"})
        else:
            self._reply(404, {"error": f"no such page {self.path!r}"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if "Transfer-Encoding" in self.headers:
            self._refuse(411, "send the body with a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._refuse(400, "Content-Length is not a length")
            return
        if length > MAX_BODY_BYTES:
            self._refuse(413, f"the body is over {MAX_BODY_BYTES} bytes")
            return
        try:
            params = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"error": "the body is not JSON"})
            return
        if self.server.work_seconds:
            # Sleeps in this connection's thread only: the server's other connections go on meanwhile,
            # as a server that runs requests concurrently (a database, several GPUs) would.
            time.sleep(self.server.work_seconds)
        self._reply(*answer(self.path, params))

    def _authorized(self) -> bool:
        """Whether the request carries the secret; if not, it is refused and its connection closed, body unread."""
        offered = self.headers.get("Authorization", "")
        if hmac.compare_digest(offered.encode(), f"Bearer {self.server.secret}".encode()):
            self.authenticated = True
            return True
        self._refuse(401, "unauthenticated")
        return False

    def _refuse(self, status: int, error: str) -> None:
        """Answer ``status`` and close the connection: the body, unread, must not be taken for the next request."""
        self.close_connection = True
        self._reply(status, {"error": error}, {"Connection": "close"})

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: a line per request would fill the server's log


class DemoServer(ThreadingHTTPServer):
    """One thread per connection: the head's client keeps one per call in flight, so V calls run at once.

    ``work_seconds`` is each request's simulated work (from ``DELAY_ENV``).
    """

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], secret: str, auth_timeout: float = AUTH_TIMEOUT, work_seconds: float = 0.0
    ) -> None:
        self.secret = secret
        self.auth_timeout = auth_timeout
        self.work_seconds = work_seconds
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up in DNS (socket.getfqdn), which can take seconds on a node.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away is no news
            super().handle_error(request, client_address)


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
