"""The signer: the single writer of the ``entries`` and ``checkpoints`` topics.

It consumes unsigned ActionEvents, and in one Kafka transaction per batch writes the
sequenced, chained, signed entries, any checkpoint that falls due, timestamp anchors,
dead letters, and the consumer offsets (exactly-once consume-transform-produce).
"""
