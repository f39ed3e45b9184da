"""Signatures of outbound webhooks, as Stripe signs its own (SPEC §7):

    GPU-Credits-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

Right after a secret rotation the header carries one `v1=` per valid secret (the new one and
the previous one, for 24 hours), so a receiver still configured with either accepts it.

Receivers verify with `verify()` (the same code as docs/webhooks.md; it needs only the standard
library, copy it as it is).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "GPU-Credits-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


class SignatureVerificationError(ValueError):
    """The header is missing or malformed, no signature matches, or the timestamp is too old."""


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else payload


def compute(payload: bytes | str, *, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of "<timestamp>.<payload>" with `secret`."""
    signed = str(int(timestamp)).encode("ascii") + b"." + _as_bytes(payload)
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def header_value(payload: bytes | str, *, secrets: list[str], timestamp: int) -> str:
    """The header's value: `t=…` then one `v1=…` per secret."""
    parts = [f"t={int(timestamp)}"]
    parts += [f"{SCHEME}={compute(payload, secret=s, timestamp=timestamp)}" for s in secrets]
    return ",".join(parts)


def verify(
    payload: bytes | str,
    header: str,
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Check a received webhook: `payload` is the raw request body (bytes, exactly as
    received — not re-serialized JSON), `header` the `GPU-Credits-Signature` value, `secret`
    the endpoint's signing secret. Returns True, or raises SignatureVerificationError when no
    `v1` signature matches or the timestamp is more than `tolerance` seconds away from now
    (replay protection; 0 or None disables that check)."""
    if not header:
        raise SignatureVerificationError("No signature header.")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError as exc:
                raise SignatureVerificationError("Malformed timestamp.") from exc
        elif key == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureVerificationError("Malformed signature header.")
    expected = compute(payload, secret=secret, timestamp=timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureVerificationError("No signature matches the payload.")
    now = time.time() if now is None else now
    if tolerance and abs(now - timestamp) > tolerance:
        raise SignatureVerificationError("The timestamp is outside the tolerance window.")
    return True
