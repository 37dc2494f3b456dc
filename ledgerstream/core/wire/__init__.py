"""The wire format: every byte of every record on every topic is written and read here.

One implementation per direction and language, plus fast paths that must equal it:

* :mod:`codec` is the reference, over fastavro: Avro single-object encoding (``C3 01``, the
  schema's CRC-64-AVRO fingerprint little-endian, the Avro body) of every record type, writer
  schemas by fingerprint (computed from ``schemas/*.avsc``, never written down), schema
  resolution, and the legacy header byte order that is still read (decision D32).
* :mod:`avro_fast` is the hand-written Python path of the signer and verifiers: the Avro
  primitives, a reader of canonical ``ActionEvent`` bodies, the ``LedgerEntry`` writer that
  splices the action's body, the raw signature-layout reader, and the one statement of which
  schema fingerprints the hand-written code implements.
* ``_entry_reader.c`` is the compiled ``LedgerEntry`` reader behind ``avro_fast.read_entry``
  (built by ``setup.py``; optional).
* :mod:`action_writer` is the producer's ``ActionEvent`` writer, on ``avro_fast``'s primitives.

Each fast path steps aside when the shipped schemas are not the ones it implements, and is
tested against :mod:`codec` on varied, random and corrupted records.
"""
