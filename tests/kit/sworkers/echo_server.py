"""A tiny echo server for the corpus: JSON lines ``{"id": 1, "x": v}`` -> ``{"id": 1, "result": v}``, or HTTP.

Run it by path (``python .../echo_server.py --port N``): it imports nothing from
this repository, so it starts the same way from any working directory.

- ``{"op": "exit"}`` ends the process at once (a server dying under its clients);
  ``{"op": "reset"}`` resets every connection (SO_LINGER 0) and exits.
- ``{"op": "stop"}`` stops the process (SIGSTOP): connections stay open and nothing answers (a stalled server).
- ``{"op": "token", "delay": s}`` answers ``{"token": ...}`` after ``s`` seconds (a slow token service).
- ``--one-job``: a server that runs one job at a time, as many scientific codes do:
  ``{"op": "submit", "x": v}`` -> ``{"job": n}`` (or ``{"error": "busy"}`` while a job's result
  has not been fetched), then ``{"op": "result", "job": n}`` -> ``{"result": v}``.
- ``POST /echo`` with a JSON body ``{"x": v}`` answers ``{"result": v}`` (HTTP/1.1, keep-alive),
  for clients built on an HTTP library; ``Authorization`` is not checked.
- ``--max-in-flight N``: an HTTP request beyond N in flight is refused with ``429 Too Many Requests``
  (a rate-limited API), with ``Retry-After: S`` if ``--retry-after S`` is given.
- ``--start-delay S`` listens only after ``S`` seconds (a slow start); ``--silent`` never listens.
- ``--tag`` only marks the command line, so that tests can find the processes of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys

WRITERS: set[asyncio.StreamWriter] = set()


class Admission:
    """How many HTTP requests are in flight, and the limit above which they are refused (0: none)."""

    def __init__(self, limit: int, retry_after: float) -> None:
        self.limit, self.retry_after, self.in_flight = limit, retry_after, 0

    def refusal(self) -> bytes:
        headers = f"Retry-After: {self.retry_after:g}\r\n" if self.retry_after else ""
        body = b'{"error": "too many requests in flight"}'
        return (
            f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body


class OneJob:
    """The one job slot of a ``--one-job`` server."""

    def __init__(self) -> None:
        self.pending: tuple[int, object] | None = None
        self.count = 0

    def handle(self, request: dict[str, object]) -> dict[str, object]:
        if request.get("op") == "submit":
            if self.pending is not None:
                return {"error": "busy: one job at a time"}
            self.count += 1
            self.pending = (self.count, request.get("x"))
            return {"job": self.count}
        if self.pending is None or request.get("job") != self.pending[0]:
            return {"error": f"no such job: {request.get('job')}"}
        _, value = self.pending
        self.pending = None
        return {"result": value}


async def answer(request: dict[str, object], delay: float, one_job: OneJob | None) -> dict[str, object]:
    op = request.get("op")
    if op == "exit":
        os._exit(0)
    if op == "reset":
        for writer in WRITERS:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os._exit(0)
    if op == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    if op == "token":
        await asyncio.sleep(float(str(request.get("delay", 0))))
        return {"token": "token-from-the-service"}
    if delay:
        await asyncio.sleep(delay)
    if one_job is not None and op in ("submit", "result"):
        return {"id": request.get("id"), **one_job.handle(request)}
    return {"id": request.get("id"), "result": request.get("x")}


async def serve_http(
    first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, admission: Admission
) -> None:
    line = first
    while line:
        length = 0
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = json.loads(await reader.readexactly(length)) if length else {}
        if admission.limit and admission.in_flight >= admission.limit:
            writer.write(admission.refusal())
        else:
            admission.in_flight += 1
            try:
                reply = json.dumps(await answer(body, delay, None)).encode()
            finally:
                admission.in_flight -= 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(f"Content-Length: {len(reply)}\r\n\r\n".encode() + reply)
        await writer.drain()
        line = await reader.readline()


async def serve_client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    one_job: OneJob | None,
    admission: Admission,
) -> None:
    WRITERS.add(writer)
    try:
        while line := await reader.readline():
            if line.startswith((b"POST ", b"GET ")):
                await serve_http(line, reader, writer, delay, admission)
                return
            writer.write(json.dumps(await answer(json.loads(line), delay, one_job)).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        pass
    finally:
        WRITERS.discard(writer)
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    if args.silent:
        await asyncio.Event().wait()  # never listens
    await asyncio.sleep(args.start_delay)
    slot = OneJob() if args.one_job else None
    admission = Admission(args.max_in_flight, args.retry_after)
    server = await asyncio.start_server(
        lambda r, w: serve_client(r, w, args.delay, slot, admission), args.host, args.port
    )
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--start-delay", type=float, default=0.0, help="seconds before listening")
    parser.add_argument("--silent", action="store_true", help="never listen")
    parser.add_argument("--one-job", action="store_true", help="run one job at a time (submit, then result)")
    parser.add_argument("--max-in-flight", type=int, default=0, help="refuse HTTP requests beyond N in flight (429)")
    parser.add_argument("--retry-after", type=float, default=0.0, help="the Retry-After of a refusal, in seconds")
    parser.add_argument("--tag", default="", help="marks the command line; unused")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
