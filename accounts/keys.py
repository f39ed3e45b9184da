"""The shape of API keys: `gpuc_<8 hex prefix>_<secret>`, stored as a SHA-256 digest.

Pure functions, shared by `accounts.services` (creating keys) and `accounts.selectors`
(looking a presented key up)."""

from __future__ import annotations

import hashlib

API_KEY_PREFIX = "gpuc_"


def hash_api_key(raw_key: str) -> str:
    """SHA-256 of the whole key. Keys carry 256 bits of randomness, so a slow hash adds nothing
    (as with GitHub and Stripe tokens) and lookups stay O(1) on the indexed prefix."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def split_api_key(raw_key: str, *, kind: str = API_KEY_PREFIX) -> tuple[str, str] | None:
    """`gpuc_<prefix>_<secret>` → (prefix, secret), or None when the shape is wrong. `kind` is
    the leading tag (staff API tokens, `operations.tokens`, use `gpus_`)."""
    if not raw_key.startswith(kind):
        return None
    prefix, sep, secret = raw_key[len(kind) :].partition("_")
    if not sep or len(prefix) != 8 or not secret:
        return None
    return prefix, secret
