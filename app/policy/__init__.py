"""The confidentiality policy as data and pure functions (no web layer here)."""
