"""The demo server: a stand-in for your own (replace ``SERVER_COMMAND`` in the_sworker).

It speaks JSON lines over TCP and serves only clients that first present the
per-instance secret, which it reads from the environment, never from its
command line (where ``ps`` would show it to every user of the node).
It runs in its own process, so it may use any framework; this one uses asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import sys
from typing import Any

SECRET_ENV = {{ (cookiecutter.package_name | upper ~ "_SERVER_SECRET") | py_str }}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one authenticated request."""
    op = request.get("op")
    if op == "square":
        x = request.get("x")
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            return {"error": f"square needs a number, got {x!r}"}
        return {"result": x * x}
    if op == "ping":
        return {"result": "pong"}
    return {"error": f"unknown op {op!r}"}


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: str) -> None:
    """Serve one connection until it closes; refuse it unless it starts with the secret."""
    authenticated = False
    try:
        while line := await reader.readline():
            try:
                request = json.loads(line)
            except ValueError:
                break
            if not authenticated:
                offered = str(request.get("secret", "")) if request.get("op") == "hello" else ""
                authenticated = hmac.compare_digest(offered.encode(), secret.encode())
                reply = {"result": "hello"} if authenticated else {"error": "unauthenticated"}
            else:
                reply = answer(request)
            writer.write(json.dumps({"id": request.get("id"), **reply}).encode() + b"\n")
            await writer.drain()
            if not authenticated:
                break
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, secret: str) -> None:
    """Listen on ``host:port`` until terminated."""
    server = await asyncio.start_server(lambda r, w: serve_client(r, w, secret), host, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        print(f"demo server: set {SECRET_ENV} to the per-instance secret", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args.host, args.port, secret))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
