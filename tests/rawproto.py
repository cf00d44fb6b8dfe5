"""The NATS client protocol by hand, for tests that must see exactly what the server refuses
(a client library would hide the answer behind a timeout)."""

from __future__ import annotations

import json
import socket

from schemas.wire import Signer


def handshake(url: str, signer: Signer | None, then: bytes = b"") -> str:
    """Connect with the raw protocol, answer the server's challenge with ``signer`` (or not
    at all), send ``then``, then PING: the server's first answer ('PONG', or '-ERR ...')."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        stream = sock.makefile("rb")
        info = json.loads(stream.readline()[5:])
        connect: dict[str, object] = {"verbose": False, "pedantic": False, "protocol": 1}
        if signer is not None:
            connect["nkey"] = signer.public_key
            connect["sig"] = signer.sign_nonce(info["nonce"])
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n" + then + b"PING\r\n")
        return stream.readline().decode().strip()


def pub(subject: str) -> bytes:
    return f"PUB {subject} 2\r\n{{}}\r\n".encode()


def sub(subject: str) -> bytes:
    return f"SUB {subject} 1\r\n".encode()


def plaintext_attempt(url: str, signer: Signer) -> bytes:
    """Speak plaintext NATS to ``url`` without waiting for a greeting (CONNECT with
    ``signer``'s key, then PING): everything the server sends back until it closes."""
    host, port = url.split("://")[-1].rsplit(":", 1)
    connect = {"verbose": False, "protocol": 1, "nkey": signer.public_key}
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = b""
        try:
            while chunk := sock.recv(1 << 16):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer
