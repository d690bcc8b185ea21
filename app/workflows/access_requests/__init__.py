"""Subject and personnel access requests (§3.4 to §3.6; DESIGN §5 "Access requests").

- rules: who may ask (a signed letter, §3.4, §3.6) and who answers
- deadlines: the 14-day due date and what is overdue
- read: who sees which requests; reading and listing them
- intake: logging a letter the Director received
- transitions: deciding and withdrawing, through the one conditional status change
- package: building, sealing and opening the package (§3.4, §3.5, §3.6)
- fulfilment: fulfilling a request and downloading its package
- package_retention: stored packages as data under §4.6 and §6.5

A request is a signed letter to the Director, logged by any staff account. It is due
14 days after receipt and moves ``received → approved | refused``, ``approved →
fulfilled``, and to ``withdrawn`` from either open state. Every transition is a
conditional UPDATE on the expected status, so two concurrent decisions cannot both
succeed. Fulfilment builds the package once and stores it encrypted (§6.6).

Audit events carry ids and statuses only: no names, letter text or reasons.
"""
