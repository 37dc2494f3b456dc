"""SIEM export: stream ledger entries and verifier alerts to a SIEM (docs/siem.md).

``events`` flattens records into two views, ``formats`` maps them (ECS, CEF, OCSF,
RFC 5424 syslog; one module each behind one interface), ``sinks`` deliver lines and
acknowledge them, and ``exporter`` runs the at-least-once consumer loop in between.
"""
