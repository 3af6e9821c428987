"""A server that records the moment it starts listening, for the readiness-latency benchmark.

Usage: python listen_stamp.py HOST PORT STAMP_FILE. It binds, listens, writes
``time.time()`` to STAMP_FILE, then accepts and drops connections until killed.
"""

from __future__ import annotations

import socket
import sys
import time


def main() -> None:
    host, port, stamp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen()
        with open(stamp, "w") as out:
            out.write(repr(time.time()))
        while True:
            connection, _ = server.accept()
            connection.close()


if __name__ == "__main__":
    main()
