"""The ledger over the Model Context Protocol: a server (``server``) and a governing proxy (``proxy``)."""
