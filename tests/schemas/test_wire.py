"""Signing and verification of the wire format: pure, no server."""

from __future__ import annotations

import pytest

from schemas import subjects
from schemas.roster import Identity, Role, Roster
from schemas.subjects import CoreVerb
from schemas.wire import SIGNATURE_HEADER, SIGNER_HEADER, Refusal, Signer, Verifier, WireError
from schemas.wire import new_user_seed as seed

SUBMIT = subjects.core_command(CoreVerb.SUBMIT)


def _setup() -> tuple[Signer, Signer, Verifier]:
    user, sched = Signer(seed()), Signer(seed())
    roster = Roster(
        [
            Identity(name="alice", role=Role.USER, key=user.public_key),
            Identity(name="scheduler", role=Role.SCHEDULER, key=sched.public_key),
        ]
    )
    return user, sched, Verifier(roster)


def test_signed_message_verifies_and_names_its_sender() -> None:
    user, _, verifier = _setup()
    payload = b'{"type":"cancel_job"}'
    assert verifier.verify(SUBMIT, payload, user.headers(SUBMIT, payload)).name == "alice"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s, p, h: (s, p, {}), Refusal.UNSIGNED),
        (lambda s, p, h: (s, p + b" ", h), Refusal.BAD_SIGNATURE),
        (lambda s, p, h: (subjects.core_command(CoreVerb.CANCEL), p, h), Refusal.BAD_SIGNATURE),
        (lambda s, p, h: (s, p, {**h, SIGNATURE_HEADER: "!!notbase64"}), Refusal.BAD_SIGNATURE),
        (
            lambda s, p, h: (s, p, {**h, SIGNER_HEADER: Signer(seed()).public_key}),
            Refusal.UNKNOWN_SIGNER,
        ),
        (lambda s, p, h: (s, b"x" * (4 * 1024 * 1024 + 1), h), Refusal.TOO_LARGE),
    ],
    ids=["unsigned", "tampered", "other-subject", "garbage-sig", "unknown-key", "oversized"],
)
def test_tampered_or_unsigned_messages_are_refused(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    user, _, verifier = _setup()
    payload = b'{"type":"submit_job"}'
    subject, payload, headers = mutate(SUBMIT, payload, user.headers(SUBMIT, payload))
    with pytest.raises(WireError) as err:
        verifier.verify(subject, payload, headers)
    assert err.value.reason is reason


def test_forged_signature_from_another_key_is_refused() -> None:
    user, _, verifier = _setup()
    forger = Signer(seed())
    payload = b"{}"
    headers = forger.headers(SUBMIT, payload)
    headers[SIGNER_HEADER] = user.public_key  # claims to be alice
    with pytest.raises(WireError) as err:
        verifier.verify(SUBMIT, payload, headers)
    assert err.value.reason is Refusal.BAD_SIGNATURE


def test_role_decides_who_may_place_jobs() -> None:
    user, sched, verifier = _setup()
    place = subjects.core_command(CoreVerb.PLACE)
    assert verifier.verify(place, b"{}", sched.headers(place, b"{}")).role is Role.SCHEDULER
    with pytest.raises(WireError) as err:
        verifier.verify(place, b"{}", user.headers(place, b"{}"))
    assert err.value.reason is Refusal.NOT_ALLOWED


def test_a_gate_may_only_report_for_itself() -> None:
    gate = Signer(seed())
    verifier = Verifier(Roster([Identity(name="local", role=Role.GATE, key=gate.public_key)]))
    own, other = (
        subjects.gate_event("local", "run_started"),
        subjects.gate_event("ssh", "run_started"),
    )
    verifier.verify(own, b"{}", gate.headers(own, b"{}"))
    with pytest.raises(WireError):
        verifier.verify(other, b"{}", gate.headers(other, b"{}"))
