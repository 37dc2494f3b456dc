"""Witnessing (c2sp.org/tlog-witness): our post-quantum witness server, and the client that
submits each verified checkpoint to the configured witnesses and commits their cosignatures."""
