"""Webhooks: subscriptions, the outbox written with each event, and the delivery worker.

- subscriptions: directors subscribe a URL to events, read, stop, and read its deliveries
- outbox: the events and their deliveries, written with the change that causes them
- delivery: claiming due deliveries, posting them signed, recording each attempt
- signing: the ``X-KMM-Signature`` header, made and checked
- audience: who a breach-report event may reach (subscriptions' creators, delivery-log readers)

**Outbox.** ``outbox.enqueue`` writes the event and one delivery row per subscription that
wants it on the caller's session, so they commit (or roll back) with the change that causes
them: an access request logged, a breach report opened, a disclosure raised, a record
destroyed (by hand or by the retention sweep); the scheduler adds the due-soon, overdue
and review-due notices. Reads and lists never write it.

**Payloads** carry ids and kinds only: never content, titles, summaries or names (§6.3,
§6.6). The body is stored as posted, so every attempt sends the same bytes.

**Breach reports** (§1.8, §7.1): the colleague concerned never learns of a report, and may be
a director. A breach-report event is written only for subscriptions whose creator, an active
director, may know of the report (``breach_reports.visibility.visible``), checked again before
each post; a delivery log never shows one about a report its reader may not know of.

**Delivery** (``delivery.run_deliveries``, a background task of every service process):
claim due rows (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: a compare-and-set on the
row), by moving ``next_attempt_at`` past the request's timeout, commit, POST, then record
the attempt. A process that dies mid-delivery leaves the row to come due again when that
lease ends, so a delivery arrives **at least once**: receivers deduplicate on
``X-KMM-Event-Id``. A failed attempt is retried with exponential backoff up to
``KMM_WEBHOOK_MAX_ATTEMPTS``; then the delivery is ``failed``.

**Signature.** ``X-KMM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256 of "<t>.<body>">``
under the subscription's secret (shown once at creation, stored encrypted).
"""
