"""The client's webhook verifier accepts exactly what SPEC §7 specifies:
`GPU-Credits-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.body">` within a tolerance window.
The header is computed here from the spec, independently of the verifier's own helpers."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from gpucredits_client import SignatureVerificationError, construct_event, verify_signature

SECRET = "whsec_test_5f1c8a"
NOW = 1_790_000_000
BODY = json.dumps({"id": "evt_1", "type": "generation.succeeded", "data": {"id": "j1"}}).encode()


def spec_header(body: bytes, secret: str, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def test_a_header_signed_per_the_spec_verifies_and_the_event_parses():
    header = spec_header(BODY, SECRET, NOW)
    assert verify_signature(BODY, header, SECRET, now=NOW + 10) == NOW
    assert construct_event(BODY, header, SECRET, now=NOW)["type"] == "generation.succeeded"


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (BODY, spec_header(BODY, "whsec_wrong", NOW)),  # wrong secret
        (BODY.replace(b"j1", b"j2"), spec_header(BODY, SECRET, NOW)),  # tampered body
        (BODY, spec_header(BODY, SECRET, NOW).replace(f"t={NOW}", f"t={NOW + 1}")),  # moved t
        (BODY, f"v1={hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()}"),  # no t
        (BODY, f"t={NOW}"),  # no signature
        (BODY, "garbage"),
        (BODY, ""),
    ],
    ids=["wrong-secret", "tampered", "moved-timestamp", "no-t", "no-v1", "garbage", "empty"],
)
def test_a_wrong_or_malformed_signature_is_refused(body, header):
    with pytest.raises(SignatureVerificationError):
        verify_signature(body, header, SECRET, now=NOW)


def test_a_signature_outside_the_tolerance_window_is_refused():
    header = spec_header(BODY, SECRET, NOW)
    verify_signature(BODY, header, SECRET, tolerance=300, now=NOW + 300)
    for now in (NOW + 301, NOW - 301):
        with pytest.raises(SignatureVerificationError, match="tolerance"):
            verify_signature(BODY, header, SECRET, tolerance=300, now=now)


def test_during_a_secret_rotation_either_signature_or_either_secret_verifies():
    old, new = "whsec_old", "whsec_new"
    both = spec_header(BODY, old, NOW) + "," + spec_header(BODY, new, NOW).split(",")[1]
    verify_signature(BODY, both, new, now=NOW)
    verify_signature(BODY, both, old, now=NOW)
    verify_signature(BODY, spec_header(BODY, old, NOW), [new, old], now=NOW)
    with pytest.raises(SignatureVerificationError):
        verify_signature(BODY, both, "whsec_other", now=NOW)


def test_the_client_verifies_what_the_server_signs_including_during_a_rotation():
    from accounts.webhooks import signing

    header = signing.header_value(BODY, secrets=["whsec_new", "whsec_old"], timestamp=NOW)
    assert verify_signature(BODY, header, "whsec_old", now=NOW) == NOW
    assert verify_signature(BODY, header, "whsec_new", now=NOW) == NOW
    with pytest.raises(SignatureVerificationError):
        verify_signature(BODY + b" ", header, "whsec_new", now=NOW)
