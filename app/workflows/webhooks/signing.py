"""The ``X-KMM-Signature`` header: what the service sends, and what a receiver checks.

``t=<unix seconds>,v1=<hex HMAC-SHA-256 of "<t>.<body>">`` under the subscription's secret.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-KMM-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header value: ``t=<timestamp>,v1=<hex HMAC-SHA-256 over "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: the MAC matches and the timestamp is recent (against replays)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")
