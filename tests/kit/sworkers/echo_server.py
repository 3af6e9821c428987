"""A tiny JSON-lines echo server for the corpus: ``{"id": 1, "x": v}`` -> ``{"id": 1, "result": v}``.

Run it by path (``python .../echo_server.py --port N``): it imports nothing from
this repository, so it starts the same way from any working directory.
``{"op": "exit"}`` ends the process at once (a server dying under its clients);
``--silent`` never listens (a server that never comes up). ``--tag`` only marks
the command line, so that tests can find the processes of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request.get("op") == "exit":
                os._exit(0)
            if delay:
                await asyncio.sleep(delay)
            writer.write(json.dumps({"id": request.get("id"), "result": request.get("x")}).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, delay: float, silent: bool) -> None:
    if silent:
        await asyncio.Event().wait()  # never listens
    server = await asyncio.start_server(lambda r, w: serve_client(r, w, delay), host, port)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--silent", action="store_true", help="never listen")
    parser.add_argument("--tag", default="", help="marks the command line; unused")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.delay, args.silent))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
