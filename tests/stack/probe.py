"""Readiness probes of the local test stack; standard library only.

    probe.py kafka HOST:PORT   -> exit 0 when a Kafka ApiVersions request is answered
    probe.py http URL          -> exit 0 when URL answers with an HTTP status < 500
"""

import socket
import struct
import sys
import urllib.error
import urllib.request


def kafka(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    client_id = b"playlake-probe"
    correlation_id = 7
    # ApiVersions (key 18) v0: header v1 = api_key, api_version, correlation_id, client_id.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.settimeout(5)
        conn.sendall(struct.pack(">i", len(body)) + body)
        header = _read(conn, 4)
        (size,) = struct.unpack(">i", header)
        response = _read(conn, size)
    got_correlation, error_code = struct.unpack(">ih", response[:6])
    return got_correlation == correlation_id and error_code == 0


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500


def main() -> int:
    kind, target = sys.argv[1], sys.argv[2]
    try:
        ok = {"kafka": kafka, "http": http}[kind](target)
    except (OSError, ValueError, struct.error):
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
