"""The signed wire format. Pure: signing and verifying bytes, no I/O.

A message is a JSON payload plus two headers: ``Skyport-Signer`` (the sender's nkey public
key, ``U...``) and ``Skyport-Signature`` (URL-safe base64 of the Ed25519 signature over the
UTF-8 subject, one ``\\n`` byte, and the payload). Receivers verify before they decode.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from enum import StrEnum

import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from schemas.roster import Identity, Roster, may_publish

SIGNER_HEADER = "Skyport-Signer"
SIGNATURE_HEADER = "Skyport-Signature"
MAX_PAYLOAD = 4 * 1024 * 1024


class Refusal(StrEnum):
    """Why a message was refused before it was decoded (counted by every receiver)."""

    UNSIGNED = "unsigned"
    UNKNOWN_SIGNER = "unknown_signer"
    BAD_SIGNATURE = "bad_signature"
    NOT_ALLOWED = "not_allowed"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    BAD_REPLY = "bad_reply"


class WireError(Exception):
    """A message was refused; ``reason`` says why, ``subject`` where it came from."""

    def __init__(self, reason: Refusal, subject: str, detail: str = "") -> None:
        super().__init__(f"{reason.value} on {subject}: {detail}" if detail else reason.value)
        self.reason = reason
        self.subject = subject
        self.detail = detail


def signed_bytes(subject: str, payload: bytes) -> bytes:
    return subject.encode() + b"\n" + payload


class Signer:
    """Signs with one nkey seed (``SU...``); the seed never leaves this object."""

    def __init__(self, seed: bytes) -> None:
        """ValueError if ``seed`` is not an nkey user seed."""
        try:
            prefix, raw = nkeys.decode_seed(bytearray(seed.strip()))
        except (nkeys.NkeysError, ValueError) as exc:  # binascii.Error is a ValueError
            raise ValueError("not an nkey user seed") from exc
        if prefix != nkeys.PREFIX_BYTE_USER:
            raise ValueError("not an nkey user seed")
        self._key = SigningKey(bytes(raw))
        self.public_key: str = nkeys.from_seed(bytearray(seed.strip())).public_key.decode()

    def sign_nonce(self, nonce: str) -> str:
        """The answer to a NATS server's authentication challenge (base64 signature)."""
        return base64.b64encode(self._key.sign(nonce.encode()).signature).decode()

    def headers(self, subject: str, payload: bytes) -> dict[str, str]:
        sig = self._key.sign(signed_bytes(subject, payload)).signature
        return {
            SIGNER_HEADER: self.public_key,
            SIGNATURE_HEADER: base64.urlsafe_b64encode(sig).decode(),
        }


def new_user_seed() -> bytes:
    """A fresh nkey user seed (``SU...``)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def _verify_key(public_key: str) -> VerifyKey:
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        raise ValueError("not a user public key")
    if nkeys.crc16(bytearray(raw[:-2])).to_bytes(2, "little") != raw[-2:]:
        raise ValueError("bad checksum")
    return VerifyKey(raw[1:-2])


class Verifier:
    """Checks signer, role and signature of incoming messages against a roster."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster
        self._keys: dict[str, VerifyKey] = {}

    def verify(self, subject: str, payload: bytes, headers: Mapping[str, str] | None) -> Identity:
        """Return the verified sender, or raise WireError. Never decodes the payload."""
        if len(payload) > MAX_PAYLOAD:
            raise WireError(Refusal.TOO_LARGE, subject, f"{len(payload)} bytes")
        signer = (headers or {}).get(SIGNER_HEADER)
        sig_text = (headers or {}).get(SIGNATURE_HEADER)
        if not signer or not sig_text:
            raise WireError(Refusal.UNSIGNED, subject)
        identity = self.roster.get(signer)
        if identity is None:
            raise WireError(Refusal.UNKNOWN_SIGNER, subject, signer[:12])
        if not may_publish(identity, subject):
            raise WireError(Refusal.NOT_ALLOWED, subject, f"{identity.role} {identity.name}")
        try:
            key = self._keys.get(signer) or self._keys.setdefault(signer, _verify_key(signer))
            key.verify(signed_bytes(subject, payload), base64.urlsafe_b64decode(sig_text))
        except (BadSignatureError, binascii.Error, ValueError) as exc:
            raise WireError(Refusal.BAD_SIGNATURE, subject, identity.name) from exc
        return identity
