"""Agent-side library of ledgerstream (imported as ``ledgerstream.producers``).

Light by design: importing it loads neither faust, aiohttp nor any web stack, and the
Kafka client only once a Ledger connects. The public names are re-exported lazily by the
top-level ``ledgerstream`` package (``ledgerstream.connect`` etc.).
"""
