"""Compliance evidence reports over a period of the ledger (docs/report.md)."""
