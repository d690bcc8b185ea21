"""Scopes a service client may hold; a client can do nothing its scopes do not name.

Each scope is described once here; the OpenAPI document, the README and ``kmm
create-client`` take the list from this table. Accounts hold no scopes: their role and
their relation to a record decide (DESIGN §4).
"""

SCOPES: dict[str, str] = {
    "records:read": "Read general records, the ones any active account may read (§4.1); never a confidential one.",
    "records:write": "Create general records, naming the colleague who is their custodian (§4.2).",
    "subjects:read": "Read the subject directory: who information is held about (§2.1).",
    "subjects:write": "Create subjects in the directory (§2.1).",
    "reports:read": "Read the aggregate monitoring and funder reports, small counts suppressed (§2.3).",
}


def requested_scopes(scope: str) -> frozenset[str]:
    """The scopes a token request names (RFC 6749 §3.3: space-separated, order free)."""
    return frozenset(scope.split())
