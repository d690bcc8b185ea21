"""The OpenAPI document's words for every operation: a stable dotted ``operationId``
(``records.read``) that generated clients name their functions after, a summary, a
description citing the clauses of the policy, the headers the operation reads or sends,
and request examples that work against `make run`'s demo.

One table, keyed by method and path like DESIGN §7, so the contract reads in one place;
``tests/routers/test_openapi_document.py`` checks every operation is in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.demo.records import demo_subject_id

SAM = str(demo_subject_id("Sam Okafor"))  # a service user of the demo organisation
RIVERSIDE = str(demo_subject_id("Riverside Tenants Association"))

# What each tag is, for the docs explorer (in app.routers.TAGS order).
TAG_DESCRIPTIONS: dict[str, str] = {
    "operations": "Liveness and readiness probes for whoever runs the service (DESIGN §8).",
    "auth": "OAuth2 password and client-credentials logins, refresh and logout. A deactivated account's "
            "tokens stop working at once (§7.2); failed logins are throttled (§6.6).",
    "users": "Accounts: colleagues, directors and trustees, their roles and line managers (§1.3, §3.3). "
             "Directors manage them.",
    "service clients": "Other KMM systems, logging in with client credentials and scopes (§3.1, §6.6).",
    "subjects": "The people and organisations information is about (§2.1), with an organisation's "
                "officers who may sign requests (§3.4).",
    "records": "Information about one subject, classified general, confidential, sensitive or personnel. "
               "Every decision names the rule and clause that made it (§3, §4); content is encrypted at "
               "rest (§6.6) and shredded on destruction (§4.6).",
    "emergency grants": "A director's time-limited authorisation for someone else to read (§4.5).",
    "access requests": "Written requests to see one's records or personnel file, due in 14 days "
                       "(§3.4, §3.5, §3.6).",
    "disclosures": "Disclosures the law requires, and telling the person affected (§1.9, §5).",
    "breach reports": "Complaints, concerns, grievances and breaches of confidentiality (§1.7, §1.8, §7).",
    "data protection": "Retention, review and compliance reporting under the six principles (§6), and "
                       "monitoring reports for funders (§2.3).",
    "audit": "The append-only, hash-chained audit trail of every decision (§6.6, §7.2).",
    "webhooks": "Other KMM systems told of events as they happen: signed deliveries carrying ids and kinds, "
                "never content (§6.3, §6.6).",
}

_STRING: dict[str, Any] = {"type": "string"}
ETAG: dict[str, Any] = {
    "description": 'The record\'s version as an entity tag, e.g. "v3": send it back as If-Match to update (§6.4).',
    "schema": _STRING, "required": True}
X_CONFIDENTIALITY: dict[str, Any] = {
    "description": "The classification of non-general content in the response (§3.7, §4.4); absent when all of it "
                   "is general.",
    "schema": _STRING}
NO_STORE: dict[str, Any] = {"description": "Always no-store: no cache keeps information about someone (§3.7).",
            "schema": _STRING, "required": True}
RETRY_AFTER: dict[str, Any] = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"},
               "required": True}
LOCATION: dict[str, Any] = {"description": "The path of the new record.", "schema": _STRING, "required": True}
IF_MATCH = ("The ETag of the record as last read (\"v3\"). Without it the update is refused with 428, and "
            "with a stale one with 412, so no update is ever lost to a concurrent one.")

RECORD: dict[str, dict[str, Any]] = {"ETag": ETAG, "X-Confidentiality": X_CONFIDENTIALITY, "Cache-Control": NO_STORE}
CONTENT: dict[str, dict[str, Any]] = {"X-Confidentiality": X_CONFIDENTIALITY, "Cache-Control": NO_STORE}


@dataclass(frozen=True)
class Operation:
    id: str
    summary: str
    description: str
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)  # on the success response
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)  # request body examples by name


def _ex(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "value": value}


OPERATIONS: dict[tuple[str, str], Operation] = {
    # -- records ------------------------------------------------------------------------------
    ("POST", "/records"): Operation(
        "records.create", "Keep a record about a subject",
        "Any staff account keeps a record about a subject; the creator is its custodian unless "
        "`custodian_id` names another (§4.2). A record that is not general is labelled CONFIDENTIAL "
        "(§3.2, §4.4); a sensitive one names who may request access (§3.2). It has a purpose (§2.2, "
        "§6.2), consent (§1.2) and retention and review dates from the schedule (§6.4, §6.5). "
        "Personnel records are kept by the employee's line manager or a director (§4.3).",
        headers={**RECORD, "Location": LOCATION},
        examples={
            "confidential": _ex("A confidential support note about Sam Okafor, a subject of the demo", {
                "subject_id": SAM, "title": "Home visit notes",
                "content": "Visited on Tuesday; agreed the next steps of the support plan.",
                "classification": "confidential", "purpose": "service_delivery",
                "consent": {"status": "obtained", "obtained_at": "2026-01-05T10:00:00Z", "purpose_explained": True},
            }),
            "general": _ex("General contact details of the demo's Riverside Tenants Association", {
                "subject_id": RIVERSIDE, "title": "Meeting venue", "content": "Community hall, Mill Lane.",
                "classification": "general", "purpose": "service_delivery",
            }),
        }),
    ("GET", "/records"): Operation(
        "records.list", "List the records the caller may read",
        "The records the caller may read, a page at a time, filtered in the database by the same rule "
        "table as a single read (§3.1, §3.2, §4.3); titles only, never content. The list itself is "
        "audited with the ids it showed (§6.6).",
        headers=CONTENT),
    ("GET", "/records/{record_id}"): Operation(
        "records.read", "Read a record",
        "The record and `access`, the rule and clause that allowed the read (§3.1, §3.2, §4.1-§4.5). "
        "A refusal is 403 naming who may read it, and never contains the content; reads through an "
        "emergency grant are flagged (§4.5). A destroyed record is 410 with its tombstone (§4.6). "
        "Every read is audited (§6.6).",
        headers=RECORD),
    ("PATCH", "/records/{record_id}"): Operation(
        "records.update", "Update a record",
        "The custodian, their line manager or a director (confidential), or the employee's line "
        "manager or a director (personnel) update a record (§4.2, §4.3). Needs If-Match with the "
        "ETag. Moving a record out of sensitive takes the custodian's line manager or a director "
        "(§3.2), out of personnel a director (§4.3); a retention date off the schedule is theirs "
        "to choose (§6.5).",
        headers=RECORD,
        examples={"retitle": _ex("Retitle (send the ETag of your last read as If-Match)",
                                 {"title": "Home visit notes (revised)"})}),
    ("DELETE", "/records/{record_id}"): Operation(
        "records.destroy", "Destroy (shred) a record",
        "The custodian's line manager or a director (the employee's line manager or a director for "
        "personnel) shreds a record: its content and data key are deleted for good and a tombstone "
        "stays (§4.6). A record under legal hold is not destroyed (409, §6.5). Give the reason in "
        "the body or in X-Reason.",
        examples={"reason": _ex("Why it is shredded", {"reason": "kept longer than necessary (§6.5)"})}),
    ("GET", "/records/{record_id}/access-log"): Operation(
        "records.access_log", "Who accessed a record",
        "Who read, listed or exported the record, when and by which rule; emergency reads are "
        "flagged (§4.5, DESIGN §6). For those answerable for the record and directors (§3.3, §4.2)."),
    ("POST", "/records/{record_id}/shares"): Operation(
        "records.shares.add", "Pass a confidential record to someone",
        "Pass a confidential record to a named colleague, line manager or trustee, with a reason "
        "(§3.1). A sensitive record is not shared but names colleagues (named-access, §3.2)."),
    ("GET", "/records/{record_id}/shares"): Operation(
        "records.shares.list", "Who a record was passed to",
        "The accounts a confidential record was passed to, and why (§3.1)."),
    ("DELETE", "/records/{record_id}/shares/{user_id}"): Operation(
        "records.shares.remove", "Stop passing a record to someone",
        "Remove a share: the account no longer reads the record by it (§3.1)."),
    ("POST", "/records/{record_id}/named-access"): Operation(
        "records.named_access.add", "Name a colleague entitled to a sensitive record",
        "Add a colleague to a sensitive record's entitled list; needs the subject's consent or "
        "knowledge on record (§1.3, §3.2)."),
    ("GET", "/records/{record_id}/named-access"): Operation(
        "records.named_access.list", "The colleagues named on a sensitive record",
        "The colleagues entitled to a sensitive record, and the consent reference for each (§3.2)."),
    ("DELETE", "/records/{record_id}/named-access/{user_id}"): Operation(
        "records.named_access.remove", "Take a colleague off a sensitive record",
        "Remove a colleague from a sensitive record's entitled list (§3.2)."),
    ("POST", "/records/{record_id}/legal-hold"): Operation(
        "records.legal_hold", "Place or lift a legal hold",
        "A director places or lifts a legal hold: a held record is never destroyed, by hand or by "
        "the retention sweep (§6.5).",
        examples={"hold": _ex("Hold for a court case", {"legal_hold": True, "reason": "pending tribunal"})}),
    ("POST", "/records/{record_id}/review"): Operation(
        "records.review", "Record that a record was verified",
        "Whoever may update the record, or a director, records that it was verified as accurate "
        "and up to date; moves `review_due` forward (§6.4).",
        examples={"note": _ex("Verified with the subject", {"note": "checked with Sam by phone"})}),
    # -- operations ---------------------------------------------------------------------------
    ("GET", "/healthz"): Operation(
        "operations.alive", "Is the process alive",
        "Answers without the database or a login, for a liveness probe; it shows nothing about anyone "
        "(DESIGN §8, §6.6)."),
    ("GET", "/readyz"): Operation(
        "operations.ready", "Is the service ready",
        "The database is reachable and its schema at the latest migration; 503 otherwise (DESIGN §8, "
        "§6.6)."),
    # -- auth ---------------------------------------------------------------------------------
    ("POST", "/auth/token"): Operation(
        "auth.token", "Log in",
        "OAuth2 (RFC 6749), a form: the password grant (username = email) for accounts, "
        "`grant_type=client_credentials` for service clients (with `scope`: fewer scopes than the "
        "client holds, never more), or `grant_type=refresh_token`. The answer's `scope` names the "
        "scopes granted. Errors are RFC 6749 §5.2 bodies (`error`, `error_description`). Failed "
        "logins are counted and throttled, 429 with Retry-After (§6.6); a deactivated account "
        "cannot log in (§7.2)."),
    ("POST", "/auth/refresh"): Operation(
        "auth.refresh", "Rotate the refresh token",
        "The refresh_token grant with a JSON body: a new token pair; presenting an old one again "
        "ends the whole session (§6.6). Errors are RFC 6749 §5.2 bodies."),
    ("POST", "/auth/logout"): Operation(
        "auth.logout", "Log out",
        "Ends the session at once: its refresh token and every access token issued in it stop "
        "working (§6.6)."),
    # -- users --------------------------------------------------------------------------------
    ("GET", "/users/me"): Operation(
        "users.me", "The account logged in",
        "The caller's own account: role, staff type and line manager (§1.3, §3.3)."),
    ("POST", "/users/me/password"): Operation(
        "users.me.password", "Change one's own password",
        "Checked like a login (§6.6): a wrong current password counts as a failed one. The "
        "account's other sessions end; the caller's goes on."),
    ("POST", "/users"): Operation(
        "users.create", "Create an account",
        "A director creates a colleague, director or trustee account, with a line manager for "
        "colleagues (§1.3, §3.3); passwords are checked against common ones (§6.6).",
        examples={"volunteer": _ex("A volunteer's account (choose a password of your own)", {
            "email": "erin@demo.kmm.org.uk", "full_name": "Erin Example", "role": "colleague",
            "staff_type": "volunteer", "password": "a long passphrase of your own choosing"})}),
    ("GET", "/users"): Operation(
        "users.list", "List accounts",
        "Accounts, for directors (§3.1, §6.6)."),
    ("GET", "/users/{user_id}"): Operation(
        "users.read", "Read an account", "One account, for directors (§6.6)."),
    ("PATCH", "/users/{user_id}"): Operation(
        "users.update", "Change role, line manager or active",
        "A director changes an account's role, line manager or deactivates it; a deactivated account "
        "can do nothing at once (§7.2). A director does not make themself someone's line manager "
        "(§4.5, §3.2)."),
    ("POST", "/users/{user_id}/password"): Operation(
        "users.password.reset", "Reset an account's password",
        "A director resets another account's password: its sessions end and it must change the "
        "password at its next login (§6.6)."),
    ("POST", "/users/{user_id}/unlock"): Operation(
        "users.unlock", "Lift a lock from failed logins",
        "A director lifts the lock failed logins put on an account; audited (§6.6)."),
    # -- service clients ----------------------------------------------------------------------
    ("POST", "/service-clients"): Operation(
        "service_clients.create", "Register a service client",
        "A director registers another KMM system with scopes; the secret is in this response only "
        "(§6.6).",
        examples={"reporting": _ex("A reporting system that reads monitoring aggregates", {
            "name": "Funder reporting", "scopes": ["reports:read"]})}),
    ("GET", "/service-clients"): Operation(
        "service_clients.list", "List service clients", "The registered service clients (§6.6)."),
    ("POST", "/service-clients/{client_id}/secret"): Operation(
        "service_clients.rotate_secret", "Rotate a service client's secret",
        "A director gets a new secret, in this response only; the old one and every token got with "
        "it stop working at once; audited (§6.6)."),
    ("DELETE", "/service-clients/{client_id}"): Operation(
        "service_clients.deactivate", "Deactivate a service client",
        "Its tokens stop working at once (§6.6, §7.2)."),
    # -- subjects -----------------------------------------------------------------------------
    ("POST", "/subjects"): Operation(
        "subjects.create", "Add a subject",
        "Staff add an individual or an organisation information is about (§2.1); an organisation "
        "names the officers who may sign requests (§3.4); an employee subject links to that "
        "employee's account (§3.6).",
        examples={
            "individual": _ex("A service user", {"kind": "individual", "name": "Jamie Example",
                                                 "category": "service_user"}),
            "organisation": _ex("An organisation and its officers", {
                "kind": "organisation", "name": "Canal Street Food Bank", "category": "organisation",
                "officers": [{"name": "Rae Chair", "office": "chair"}]}),
        }),
    ("GET", "/subjects"): Operation(
        "subjects.list", "Search the subject directory",
        "Staff search subjects by name or category (§2.1); trustees see what is passed to them "
        "instead (§3.1)."),
    ("GET", "/subjects/{subject_id}"): Operation(
        "subjects.read", "Read a subject", "One subject of the directory, for staff (§2.1, §3.1)."),
    # -- emergency grants ---------------------------------------------------------------------
    ("POST", "/emergency-grants"): Operation(
        "emergency_grants.issue", "Authorise emergency access",
        "A director authorises an account to read one record, or every record of a subject, until "
        "`expires_at`, with a reason; each read through it is flagged in the audit (§4.5)."),
    ("GET", "/emergency-grants"): Operation(
        "emergency_grants.list", "List emergency grants",
        "Directors see every grant; anyone else the grants made to them (§4.5)."),
    ("DELETE", "/emergency-grants/{grant_id}"): Operation(
        "emergency_grants.revoke", "Revoke an emergency grant",
        "A director ends a grant before it expires (§4.5)."),
    # -- access requests ----------------------------------------------------------------------
    ("POST", "/access-requests"): Operation(
        "access_requests.log", "Log a written access request",
        "Any staff account logs a signed letter the Director received: signed by the individual, or "
        "for an organisation by its Chair, Executive Officer or Manager (§3.4); an employee may file "
        "one for their own personnel records (§3.6). A verbal or wrongly signed request is refused "
        "with the clause. Due 14 days after receipt. One letter is one request: the same reference "
        "for the same subject again is 409, with `existing_id` for a caller who may see the first request "
        "(§3.4). With `Idempotency-Key`, a "
        "retry returns the first result.",
        examples={"subject_access": _ex("Sam Okafor, of the demo, asks for his records", {
            "kind": "subject_access", "subject_id": SAM, "requester_subject_id": SAM,
            "signed_by": "Sam Okafor", "signatory_capacity": "individual", "in_writing": True,
            "letter_reference": "SO-2026-11", "received_at": "2026-11-20T09:00:00Z"})}),
    ("GET", "/access-requests"): Operation(
        "access_requests.list", "List access requests",
        "By due date, with `overdue` (§3.4, §3.6). Directors see all; other staff those they logged "
        "or their own."),
    ("GET", "/access-requests/{request_id}"): Operation(
        "access_requests.read", "Read an access request", "One request and its status (§3.4, §3.6)."),
    ("POST", "/access-requests/{request_id}/decision"): Operation(
        "access_requests.decide", "Approve or refuse a request",
        "A director decides a received request, with reasons; never one about themself (§3.4, §3.6).",
        examples={"approve": _ex("Approve", {
            "approve": True, "reason": "signature checked against the file"})}),
    ("POST", "/access-requests/{request_id}/withdraw"): Operation(
        "access_requests.withdraw", "Withdraw a request",
        "Directors, whoever logged it, or the employee who filed it withdraw an open request (§3.4, "
        "§3.6)."),
    ("POST", "/access-requests/{request_id}/fulfil"): Operation(
        "access_requests.fulfil", "Fulfil an approved request",
        "A director builds the package: the subject's records stamped CONFIDENTIAL, a sensitive "
        "record only for the person named on it (withheld ones counted, §3.5), and who accessed "
        "them (§3.4, §3.6)."),
    ("GET", "/access-requests/{request_id}/package"): Operation(
        "access_requests.package", "Download the package",
        "The fulfilled package, stamped CONFIDENTIAL: for directors, or the employee of a personnel "
        "request (§3.5, §3.6). Destroyed at the end of its retention period (§6.5).",
        headers=CONTENT),
    # -- disclosures --------------------------------------------------------------------------
    ("POST", "/disclosures"): Operation(
        "disclosures.raise", "Raise a disclosure",
        "Any staff account raises one; the category decides where it goes: child abuse to Social "
        "Services (§5.1), drug trafficking, money laundering, terrorism and treason to the police "
        "(§5.2), other illegal acts and risk of harm to the Director (§5.3), anything else only with "
        "consent (§1.3).",
        examples={"risk_of_harm": _ex("A risk of harm, to the Director", {
            "subject_id": SAM, "category": "risk_of_harm",
            "summary": "Said during a visit that he might hurt himself."})}),
    ("GET", "/disclosures"): Operation(
        "disclosures.list", "List disclosures",
        "Newest first: one's own, or every one for a director (§5)."),
    ("GET", "/disclosures/{disclosure_id}"): Operation(
        "disclosures.read", "Read a disclosure", "For whoever raised it and directors (§5)."),
    ("POST", "/disclosures/{disclosure_id}/report"): Operation(
        "disclosures.report", "Record a disclosure as made",
        "A director records to which authority, when and with what reference it was made (§5.1-§5.3)."),
    ("POST", "/disclosures/{disclosure_id}/subject-informed"): Operation(
        "disclosures.subject_informed", "Record that the person was told",
        "Whoever raised it, or a director, records that the person affected was told the disclosure "
        "has been or will be made (§1.9, §5.4)."),
    ("POST", "/disclosures/{disclosure_id}/close"): Operation(
        "disclosures.close", "Close a disclosure",
        "A director closes it once it is reported and the person affected told (§1.9, §5.4)."),
    # -- breach reports -----------------------------------------------------------------------
    ("POST", "/breach-reports"): Operation(
        "breach_reports.create", "Report a complaint, concern, grievance or breach",
        "Any staff account reports; it goes to the line manager of the colleague concerned, or to a "
        "director (§1.7, §1.8, §7.1, §7.2). The colleague concerned never sees it.",
        examples={"grievance": _ex("A grievance about KMM (§7.1)", {
            "kind": "grievance", "description": "Rotas are changed without notice."})}),
    ("GET", "/breach-reports"): Operation(
        "breach_reports.list", "List breach reports",
        "Newest first; each caller sees only the reports they may, never one about themself (§7.2)."),
    ("GET", "/breach-reports/{report_id}"): Operation(
        "breach_reports.read", "Read a breach report", "For its handler and directors (§7.2)."),
    ("POST", "/breach-reports/{report_id}/investigate"): Operation(
        "breach_reports.investigate", "Start the investigation",
        "The handler or a director starts the investigation (§1.8, §7.2)."),
    ("POST", "/breach-reports/{report_id}/assign"): Operation(
        "breach_reports.assign", "Hand a report to another handler",
        "A director hands the report to another active staff account (§7.2)."),
    ("POST", "/breach-reports/{report_id}/finding"): Operation(
        "breach_reports.finding", "Record the finding",
        "Substantiated (disciplinary or, for a former colleague, legal action), unsubstantiated, or "
        "malicious (action against the reporter); closes the report (§1.8, §7.2)."),
    ("POST", "/breach-reports/{report_id}/complaint-procedure-advised"): Operation(
        "breach_reports.procedure_advised", "Record that the complainant was advised",
        "The complainant of an external complaint was told about the Complaint Procedure (§1.7)."),
    # -- data protection ----------------------------------------------------------------------
    ("POST", "/retention/sweep"): Operation(
        "retention.sweep", "Run the retention sweep",
        "A director destroys every record past its retention date, except those under legal hold, "
        "and access packages past theirs (§6.5, §4.6); `dry_run` lists them only.",
        examples={"dry_run": _ex("See what would be destroyed", {"dry_run": True})}),
    ("GET", "/compliance/summary"): Operation(
        "compliance.summary", "What needs attention",
        "For directors, with ids: records past retention (§6.5), reviews overdue (§6.4), consent "
        "pending or refused (§1.2), access requests overdue (§3.4), disclosures whose subject is not "
        "told (§5.4), complaints without the procedure advised (§1.7), reports open too long (§7)."),
    ("GET", "/reports/monitoring"): Operation(
        "reports.monitoring", "Monitoring report",
        "Aggregate counts for monitoring and funders (§2.3, §6.3); counts below 5 are suppressed."),
    # -- audit --------------------------------------------------------------------------------
    ("GET", "/audit-events"): Operation(
        "audit.list", "List audit events",
        "Directors read the trail, newest first; `since` is inclusive, `until` exclusive. Never an "
        "event about a breach report the caller may not know of (§7.2, §6.6)."),
    ("GET", "/audit-events/verify"): Operation(
        "audit.verify", "Verify the audit chain",
        "Seals pending events, then recomputes the whole chain and names the first broken event; "
        "gives the chain's head (§6.6)."),
    # -- webhooks -----------------------------------------------------------------------------
    ("POST", "/webhooks"): Operation(
        "webhooks.create", "Subscribe a URL to events",
        "A director subscribes another KMM system to events; the response holds the signing secret, "
        "shown this once. Payloads carry ids and kinds only, never content (§6.3, §6.6)."),
    ("GET", "/webhooks"): Operation(
        "webhooks.list", "List webhook subscriptions", "The subscriptions, for directors (§6.6)."),
    ("GET", "/webhooks/{webhook_id}"): Operation(
        "webhooks.read", "Read a webhook subscription", "One subscription, for directors (§6.6)."),
    ("DELETE", "/webhooks/{webhook_id}"): Operation(
        "webhooks.remove", "Stop a webhook subscription",
        "Pending deliveries are cancelled; the subscription and its delivery log stay readable (§6.6)."),
    ("GET", "/webhooks/{webhook_id}/deliveries"): Operation(
        "webhooks.deliveries", "A subscription's deliveries",
        "Newest first, each with its payload (ids and kinds, §6.3) and every attempt: when, status code "
        "or error. Never a delivery about a breach report the caller may not know of (§1.8, §7.1)."),
}


def unique_id(route: Any) -> str:
    """The operationId: from the table, else ``<module>.<function>`` (dotted and unique all the same)."""
    for method in sorted(route.methods or ()):
        known = OPERATIONS.get((method, route.path))
        if known is not None:
            return known.id
    return f"{route.endpoint.__module__.rsplit('.', 1)[-1]}.{route.name}"


_METHODS = {"get", "put", "post", "delete", "patch"}


def annotate(document: dict[str, Any]) -> dict[str, Any]:
    """Give every operation in the table its words, headers and examples (in place; idempotent)."""
    document["tags"] = [{**tag, "description": TAG_DESCRIPTIONS[tag["name"]]} if tag["name"] in TAG_DESCRIPTIONS
                        else tag for tag in document.get("tags", [])]
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "header" and parameter.get("name", "").lower() == "if-match":
                    parameter["description"] = IF_MATCH
            responses = operation.get("responses", {})
            for status in ("429", "503"):
                if status in responses:
                    responses[status].setdefault("headers", {})["Retry-After"] = RETRY_AFTER
            known = OPERATIONS.get((method.upper(), path))
            if known is None:
                continue
            operation["summary"], operation["description"] = known.summary, known.description
            if known.headers:
                success = next((responses[s] for s in ("200", "201") if s in responses), None)
                if success is not None:
                    success["headers"] = dict(known.headers)
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if known.examples and content is not None:
                content["examples"] = known.examples
    return document
