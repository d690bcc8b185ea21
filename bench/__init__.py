"""The benchmark: `python -m bench` seeds an organisation in its own Postgres
schema, serves it with uvicorn, drives it with wrk and prints the numbers.

Modules: seed (bulk COPY of accounts, subjects, records, links, audit events),
service (start and stop `kmm serve`), load (wrk with wrk.lua, or a Python fallback),
measure (decide, verify, login), __main__ (the run and its report).
"""
