"""Breach reports (§1.7, §1.8, §7): report, route, investigate, find, and detect
unauthorised access.

- visibility: who may know of a report (the one predicate), and who sees all of it
- routing: who handles a report
- rerouting: an open report routed again when an account change ends its handler's relation
- reports: making, reading and listing reports, each shown as the caller may see it
- investigation: investigating, reassigning, the finding, the complaint procedure advised
- detection: unauthorised access found by the service itself (§7.2)
- compliance: what the compliance summary lists about reports

Audit events carry ids, kinds, findings and statuses only: never the description,
evidence, notes or the complainant's name.
"""
