"""A minimal synchronous NATS request client over a plain socket, for one-shot CLI queries.

Importing ``nats`` (and asyncio) costs more than a whole ``skyport jobs`` may take, so short
commands speak just enough of the NATS client protocol here: INFO (then the TLS upgrade, with
the deployment's CA, when the server requires it), CONNECT, SUB on a private inbox, HPUB of
the signed request, then HMSG/MSG of the reply (answering PING, reading +OK and -ERR).
Replies are verified like ``Bus.request`` does: signed by a core identity of the roster.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec

from schemas import subjects
from schemas.commands import AnyReply, answers
from schemas.roster import Roster, answerer
from schemas.wire import Signer, Verifier, WireError

if TYPE_CHECKING:
    import ssl  # only a caller with TLS imports it (bus.tls.client_context)

_reply_decoder = msgspec.json.Decoder(AnyReply)
_encoder = msgspec.json.Encoder()
CRLF = b"\r\n"


class QuickError(Exception):
    """A quick request failed: no server, no responder, timeout, or a refused reply."""


class QuickConnectError(QuickError):
    """The NATS server could not be reached."""


class QuickTimeoutError(QuickError):
    """Nobody answered in time, or nobody serves the subject."""


class QuickRequester:
    """One NATS connection that sends signed requests and returns core's verified replies."""

    def __init__(
        self,
        url: str,
        signer: Signer,
        roster: Roster,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """With ``tls`` (``bus.tls.client_context``) the server must require TLS and present
        a certificate that context trusts; without it, a server requiring TLS is refused."""
        self.signer = signer
        self.verifier = Verifier(roster)
        own = roster.get(signer.public_key)  # replies come to this identity's own inbox
        self.inbox = subjects.inbox_of(own.name) if own else f"{subjects.INBOX_PREFIX}unknown"
        self.timeout = timeout
        self.tls = tls
        self._buf = bytearray()
        self._sid = 0
        self._sock = self._connect(url)

    def _connect(self, url: str) -> socket.socket:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as exc:
            raise QuickConnectError(f"cannot reach NATS at {url}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:  # TLS first: not a byte in plaintext, not even the greeting
            sock = _secure(sock, self.tls, host, url)
        self._sock = sock
        try:
            info = self._greeting(url)
        except BaseException:
            sock.close()
            raise
        connect: dict[str, object] = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "lang": "python-quick",
            "version": "1",
            "protocol": 1,
            "name": "skyport-quick",
        }
        if info.get("nonce"):  # the server asks who we are: our nkey signs its challenge
            connect["nkey"] = self.signer.public_key
            connect["sig"] = self.signer.sign_nonce(str(info["nonce"]))
        try:
            sock.sendall(b"CONNECT " + json.dumps(connect).encode() + CRLF)
        except OSError as exc:
            sock.close()
            raise QuickConnectError(f"NATS connection failed: {exc}") from exc
        return sock

    def _greeting(self, url: str) -> dict[str, object]:
        """The server's INFO, refused if it wants TLS and this deployment has none."""
        try:
            info_line = self._read_line(time.monotonic() + self.timeout)
        except QuickError as exc:
            if self.tls is not None:
                raise
            raise QuickConnectError(
                f"{url} sent no greeting ({exc}): does it require TLS? This deployment has none"
            ) from exc
        if not info_line.startswith(b"INFO "):
            raise QuickConnectError(f"{url} is not a NATS server")
        info: dict[str, object] = json.loads(info_line[5:])
        if self.tls is None and info.get("tls_required"):
            raise QuickConnectError(f"{url} requires TLS: this deployment has no CA to trust")
        return info

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> QuickRequester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, subject: str, msg: msgspec.Struct, timeout: float | None = None) -> AnyReply:
        """Send ``msg`` signed on ``subject``; return the verified, decoded reply of core."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        payload = _encoder.encode(msg)
        headers = self.signer.headers(subject, payload)
        head = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        head += CRLF
        self._sid += 1
        inbox = f"{self.inbox}.{os.urandom(12).hex()}"
        self._send(
            b"".join(
                [
                    f"SUB {inbox} {self._sid}\r\n".encode(),
                    f"UNSUB {self._sid} 1\r\n".encode(),
                    f"HPUB {subject} {inbox} {len(head)} {len(head) + len(payload)}\r\n".encode(),
                    head,
                    payload,
                    CRLF,
                ]
            )
        )
        reply_subject, reply_headers, data = self._read_reply(deadline, subject, limit)
        try:
            sender = self.verifier.verify(reply_subject, data, reply_headers)
            reply: AnyReply = _reply_decoder.decode(data)
        except (WireError, msgspec.MsgspecError) as exc:
            raise QuickError(f"refused the reply to {subject}: {exc}") from exc
        expected = answerer(subject)
        if sender.role is not expected:
            raise QuickError(f"reply to {subject} not signed by {expected}")
        request_id = getattr(msg, "id", None)
        if request_id is not None and not answers(reply, request_id):
            raise QuickError(f"the reply on {subject} answers another request")
        return reply

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:  # ssl.SSLError included: the server hung up (refused us?)
            raise QuickConnectError(f"NATS connection failed: {exc}") from exc

    # -- protocol reading ----------------------------------------------------------------------

    def _read_reply(
        self, deadline: float, subject: str, limit: float
    ) -> tuple[str, dict[str, str], bytes]:
        while True:
            line = self._read_line(deadline, subject, limit)
            op, _, args = line.partition(b" ")
            op = op.upper()
            if op == b"PING":
                self._send(b"PONG\r\n")
            elif op in (b"PONG", b"+OK", b"INFO"):
                continue
            elif op == b"-ERR":
                raise QuickError(f"NATS error: {args.decode(errors='replace').strip()}")
            elif op == b"MSG":
                fields = args.split()
                data = self._read_exact(int(fields[-1]) + 2, deadline, subject, limit)[:-2]
                return fields[0].decode(), {}, bytes(data)
            elif op == b"HMSG":
                fields = args.split()
                hdr_len, total = int(fields[-2]), int(fields[-1])
                block = self._read_exact(total + 2, deadline, subject, limit)[:-2]
                status, headers = _parse_headers(bytes(block[:hdr_len]))
                if status == "503":
                    raise QuickTimeoutError(f"nobody serves {subject}")
                return fields[0].decode(), headers, bytes(block[hdr_len:])

    def _fill(self, deadline: float, subject: str = "", limit: float = 0.0) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise QuickTimeoutError(f"no reply on {subject or 'connect'} within {limit} s")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(1 << 20)
        except TimeoutError as exc:
            raise QuickTimeoutError(f"no reply on {subject or 'connect'} within {limit} s") from exc
        except OSError as exc:
            raise QuickConnectError(f"NATS connection failed: {exc}") from exc
        if not chunk:
            raise QuickConnectError("NATS server closed the connection")
        self._buf += chunk

    def _read_line(self, deadline: float, subject: str = "", limit: float = 0.0) -> bytes:
        while (end := self._buf.find(CRLF)) < 0:
            self._fill(deadline, subject, limit or self.timeout)
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_exact(self, n: int, deadline: float, subject: str, limit: float) -> bytearray:
        while len(self._buf) < n:
            self._fill(deadline, subject, limit)
        out = self._buf[:n]
        del self._buf[:n]
        return out


def _secure(sock: socket.socket, tls: ssl.SSLContext, host: str, url: str) -> socket.socket:
    """``sock`` with TLS begun at once, as the server expects (``handshake_first``): a server,
    or someone in between, that greets in plaintext fails the handshake."""
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except OSError as exc:  # ssl.SSLError included: an untrusted or wrong certificate
        sock.close()
        raise QuickConnectError(f"TLS with {url} failed: {exc}") from exc


def _parse_headers(block: bytes) -> tuple[str, dict[str, str]]:
    """Status code (may be empty) and headers of a ``NATS/1.0`` header block."""
    lines = block.decode(errors="replace").split("\r\n")
    status = lines[0][len("NATS/1.0") :].strip().split(" ", 1)[0] if lines else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    return status, headers


def request(
    url: str,
    signer: Signer,
    roster: Roster,
    subject: str,
    msg: msgspec.Struct,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> AnyReply:
    """Connect, send one signed request, return the verified reply, disconnect."""
    with QuickRequester(url, signer, roster, timeout, tls) as requester:
        return requester.request(subject, msg, timeout)
