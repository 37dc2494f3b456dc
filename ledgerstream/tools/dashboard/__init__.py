"""The read-only verifier dashboard (docs/dashboard.md): ``python -m ledgerstream.tools.dashboard``.

It follows the ledger topics itself (``follower``) into an in-memory view (``ledger``),
reads the signers' and verifiers' status files (``status_files``), and serves pages, a
JSON API and a server-sent event stream (``app``) on 127.0.0.1 unless told otherwise.
"""
