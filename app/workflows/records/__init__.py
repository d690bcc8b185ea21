"""Keeping records (§3, §4, §6): every route under /records.

- content: sealing and opening title and content under the record's own key (§6.6)
- queries: the statements that load a record with its facts, the hot path's row, the list
- decisions: the policy's answer about one record, audited, and what follows a refusal
- shape: what a caller is shown (public view, summary, tombstone)
- checks: the checks create and update share
- read: the fast and the general read, the list
- commands: create, update, destroy and shred
- shares: shares (§3.1) and named access (§3.2)
- lifecycle: legal holds (§6.5) and accuracy reviews (§6.4)

Who accessed a record is read from the audit trail (app/workflows/audit/access.py).
"""
