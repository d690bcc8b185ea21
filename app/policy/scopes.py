"""Scopes a service client may hold; a client can do nothing its scopes do not name."""

SCOPES: dict[str, str] = {
    "records:read": "read records the policy lets any active account read (general, §4.1)",
    "subjects:read": "read the subject directory",
    "subjects:write": "create subjects",
    "records:write": "create general records",
    "reports:read": "read aggregate monitoring reports (§2.3)",
}
