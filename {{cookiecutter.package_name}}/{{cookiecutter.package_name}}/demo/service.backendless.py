"""The demo service: a loopback stand-in for the remote service your client calls.

``POST /v1/square`` with ``{"x": 3}`` answers ``{"result": 9}``, for callers that
send ``Authorization: Bearer <token>`` with the token from the environment; its
base URL is ``http://127.0.0.1:<port>/v1``, a path as many APIs have. The demo
and the tests start it (``demo/environment.py``) so that everything works offline.
It imports nothing from the package: copy it anywhere and run it as a script.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Where the token callers must present comes from (the client's ``TOKEN_ENV``).
TOKEN_ENV = {{ cookiecutter.api_token_env | py_str }}
#: The path of the base URL: the API lives below it.
BASE_PATH = "/v1"
#: A request body is read only up to this size: a caller cannot make the stand-in hold more.
MAX_BODY = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    """Answers ``POST /v1/square``; refuses callers without the token."""

    token = ""
    #: Keep-alive: the client reuses its connections instead of one per call;
    #: without Nagle's algorithm, a reply's headers and body leave at once.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        offered = self.headers.get("Authorization", "")
        if not hmac.compare_digest(offered.encode(), f"Bearer {self.token}".encode()):
            self._reply(401, {"error": "unauthenticated"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 <= length <= MAX_BODY:
                self._reply(413, {"error": f"the body must be at most {MAX_BODY} bytes"})
                self.close_connection = True  # its body is left unread
                return
            params = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"error": "the body is not JSON"})
            return
        if self.path != f"{BASE_PATH}/square":
            self._reply(404, {"error": f"unknown op {self.path!r}"})
            return
        x = params.get("x")
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            self._reply(400, {"error": f"square needs a number, got {x!r}"})
            return
        self._reply(200, {"result": x * x})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: one line per request would drown the demo's output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback demo service for the sworker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"demo service: set {TOKEN_ENV} to the token callers must present", file=sys.stderr)
        return 2
    Handler.token = token
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
