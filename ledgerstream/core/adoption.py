"""Which record is entry N: the core :class:`~ledgerstream.core.verify.Checker`'s answer, for
readers that hold the ledger in memory (``replay``, the ``show``/``prove`` fallback when
there is no ledger index, the dashboard's live view).

Why here: the rule "record R is entry seq N" (decodes, hash recomputes, signed by a trusted
key, continues ``prev_hash``; a fork settled by the entry that continues it) is written once,
in the Checker. Readers do not re-implement it; they feed the Checker and learn from its
``on_adopt`` hook which record it adopted for each seq. Every other record of the entries
topic is *foreign*: reported with the finding that kept it out, never adopted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ledgerstream.core.verify import (CHECKPOINTS, ENTRIES, CheckedCheckpoint, CheckedEntry, Checker, CheckerConfig,
                                      Finding, Kind, check_checkpoint_record, check_entries)
from ledgerstream.core.verify.checkpoints import NoteLine, note_signature_key, note_signature_line

#: records handed to the Checker at once (its stateless checks run per chunk)
BATCH = 1000


@dataclass(frozen=True)
class Foreign:
    """A record of the entries topic that is not an entry of the ledger, and why."""

    offset: int
    kind: str                       # a finding kind (docs/alerts.md), e.g. "unknown_key", "fork"
    detail: str
    entry: Mapping[str, Any] | None  # the decoded record, unless it does not decode
    raw: bytes

    @property
    def seq(self) -> int | None:
        return None if self.entry is None else int(self.entry["seq"])


class Adoption:
    """Feeds both topics to one Checker and sorts the entries topic into adopted entries
    (``on_entry``, in seq order) and :class:`Foreign` records (``on_foreign``, or the
    ``foreign`` list), each as soon as the Checker has decided about it.

    With ``keep=True`` (finite reads) the findings are kept in ``findings`` and the
    checkpoints-topic records in ``checkpoints`` (every decodable Checkpoint record;
    ``rejection`` set where the stateless checks failed: untrusted key, signature, body),
    ``anchors`` (TimestampAnchor records), ``note_signatures`` (NoteSignature records) and ``rejected_checkpoints`` (offset -> finding).
    A live reader passes ``keep=False`` and uses what each ``feed_*`` call returns.
    """

    def __init__(self, config: CheckerConfig, on_entry: Callable[[CheckedEntry], None], *,
                 on_foreign: Callable[[Foreign], None] | None = None, keep: bool = True) -> None:
        self.checker = Checker(config, on_adopt=self._adopted)
        self.keep = keep
        self.findings: list[Finding] = []
        self.foreign: list[Foreign] = []
        self.checkpoints: list[CheckedCheckpoint] = []
        self.anchors: list[CheckedCheckpoint] = []
        self.note_signatures: list[CheckedCheckpoint] = []
        self.rejected_checkpoints: dict[int, Finding] = {}
        self._on_entry = on_entry
        self._on_foreign = on_foreign or self.foreign.append
        self._held: dict[int, CheckedEntry] = {}  # checked records the Checker has not decided on
        self._about: dict[int, Finding] = {}      # held offset -> the first finding about it
        self._forks: dict[int, Finding] = {}      # seq -> fork finding (it names the record that came second)

    def _adopted(self, c: CheckedEntry) -> None:
        self._held.pop(c.offset, None)
        self._about.pop(c.offset, None)
        self._on_entry(c)

    def feed_entries(self, batch: Sequence[tuple[int, bytes]]) -> list[Finding]:
        checked = [c for c in check_entries(batch, self.checker.config) if c.offset >= self.checker.next_offset[ENTRIES]]
        for c in checked:
            if c.rejection is not None:
                self._on_foreign(Foreign(c.offset, c.rejection.kind.value, c.rejection.detail, c.entry, c.raw))
            else:
                self._held[c.offset] = c
        return self._settle(self.checker.feed_checked(checked))

    def feed_checkpoints(self, batch: Sequence[tuple[int, bytes]]) -> list[Finding]:
        if self.keep:
            for record in batch:
                c = check_checkpoint_record(record, self.checker.config)
                if c.rejection is not None:
                    self.rejected_checkpoints[c.offset] = c.rejection
                if c.record is not None:
                    {"Checkpoint": self.checkpoints, "TimestampAnchor": self.anchors,
                     "NoteSignature": self.note_signatures}[c.name].append(c)
        return self._settle(self.checker.feed_checkpoints(batch))

    def finish(self) -> list[Finding]:
        """End of a finite read: the newest entry is adopted and every record the Checker
        did not adopt is foreign."""
        return self._settle(self.checker.finish(), final=True)

    def _settle(self, found: list[Finding], final: bool = False) -> list[Finding]:
        """Keep what the findings say about held records; records the Checker neither
        integrated nor still holds are foreign, with that finding."""
        self.checker.drain_journal()  # nothing to persist: the journal would only grow
        if self.keep:
            self.findings += found
        for f in found:
            offset = f.evidence.get("offset")
            if f.evidence.get("topic") == ENTRIES and offset is not None and int(offset) in self._held:
                self._about.setdefault(int(offset), f)
            if f.kind == Kind.FORK and f.seq_from is not None:
                self._forks.setdefault(f.seq_from, f)
        keep = set() if final else self.checker.held_offsets
        for offset in [o for o in self._held if o not in keep]:
            c = self._held.pop(offset)
            f = self._about.pop(offset, None) or self._forks.get(c.seq)
            self._on_foreign(Foreign(offset, f.kind.value if f else "not_adopted",
                                     f.detail if f else f"a record for seq {c.seq} the chain does not continue",
                                     c.entry, c.raw))
        held_seqs = {c.seq for c in self._held.values()}
        self._forks = {seq: f for seq, f in self._forks.items() if seq in held_seqs}
        if final:
            self.foreign.sort(key=lambda f: f.offset)
        return found

    def note_lines(self) -> dict[bytes, list[NoteLine]]:
        """Body hash -> the NoteSignature lines of configured keys, each with its verdict."""
        problems = self.checkpoint_findings()
        out: dict[bytes, list[NoteLine]] = {}
        for s in self.note_signatures:
            key = note_signature_key(s.record, self.checker.config)
            if key is not None:
                out.setdefault(bytes(s.record["body_hash"]), []).append(
                    NoteLine(s.record["role"], key, note_signature_line(s.record), s.offset not in problems))
        return out

    def checkpoint_findings(self) -> dict[int, list[Finding]]:
        """Findings about each checkpoints-topic record, by offset (rejections included)."""
        out: dict[int, list[Finding]] = {o: [f] for o, f in self.rejected_checkpoints.items()}
        for f in self.findings:
            if f.evidence.get("topic") == CHECKPOINTS and "offset" in f.evidence:
                offset = int(f.evidence["offset"])
                if f not in out.get(offset, []):
                    out.setdefault(offset, []).append(f)
        return out


def adopt(entries: Iterable[tuple[int, bytes]], checkpoints: Iterable[tuple[int, bytes]], config: CheckerConfig,
          on_entry: Callable[[CheckedEntry], None], *, progress: Callable[[int], None] | None = None) -> Adoption:
    """Run a whole ledger through :class:`Adoption`: checkpoints after the entries (a
    checkpoint waits in the Checker until the entries it covers arrive)."""
    run = Adoption(config, on_entry)
    batch: list[tuple[int, bytes]] = []
    for record in entries:
        batch.append(record)
        if len(batch) == BATCH:
            run.feed_entries(batch)
            if progress is not None:
                progress(len(batch))
            batch = []
    if batch:
        run.feed_entries(batch)
        if progress is not None:
            progress(len(batch))
    run.feed_checkpoints(list(checkpoints))
    run.finish()
    return run
