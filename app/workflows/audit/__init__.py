"""The audit trail (§6.6, DESIGN §6).

- trail: writing events and listing them
- canonical: the canonical form of an event, built by the database
- links: the keyed link (HMAC) of a seal to the one before, in Python and in SQL
- seal: sealing committed events into the chain, and the background sealer
- verify: recomputing every link and event id of the chain
- access: reading a record's accesses from the trail
"""
