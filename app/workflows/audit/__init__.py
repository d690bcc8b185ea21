"""The audit trail (§6.6, DESIGN §6): writing events (``trail``), sealing and verifying
their chain (``chain``), and reading a record's accesses from it (``access``)."""
