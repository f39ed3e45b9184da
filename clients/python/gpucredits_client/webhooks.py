"""Verify outbound webhooks (SPEC §7):

    GPU-Credits-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

as Stripe signs its webhooks. Several `v1=` entries may be present (while a secret is rotated,
both the old and the new secret sign); one matching is enough. Pass the raw request body, exactly
the bytes received: a re-serialized JSON body has another signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

from gpucredits_client.errors import GPUCreditsError

SIGNATURE_HEADER = "GPU-Credits-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureVerificationError(GPUCreditsError):
    """The signature header is missing, malformed, too old or does not match."""


def compute_signature(payload: bytes, *, secret: str, timestamp: int) -> str:
    """The hex `v1` signature of `payload` sent at `timestamp`."""
    signed = str(int(timestamp)).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, *, secret: str, timestamp: int | None = None) -> str:
    """A header value for `payload` (what a sender sends; handy in tests)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={compute_signature(payload, secret=secret, timestamp=t)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureVerificationError("Malformed signature timestamp.") from None
        elif key == "v1":
            signatures.append(value.strip())
    if timestamp is None or not signatures:
        raise SignatureVerificationError("Malformed signature header.")
    return timestamp, signatures


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str | Iterable[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check `header` against `payload` with `secret` (or any of several secrets). Returns the
    signed timestamp; raises SignatureVerificationError. `tolerance` (seconds) bounds how far
    the timestamp may be from now, in either direction (replay protection); 0 turns it off."""
    if not header:
        raise SignatureVerificationError("No signature header.")
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    timestamp, signatures = _parse(header)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [compute_signature(body, secret=s, timestamp=timestamp) for s in secrets if s]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise SignatureVerificationError("No signature matches the payload.")
    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        raise SignatureVerificationError("Signature timestamp outside the tolerance window.")
    return timestamp


def construct_event(
    payload: bytes | str,
    header: str | None,
    secret: str | Iterable[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify, then parse the JSON event."""
    verify_signature(payload, header, secret, tolerance=tolerance, now=now)
    return json.loads(payload)
