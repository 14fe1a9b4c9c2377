"""A finished job's whole record and timeline in S3, beside its manifest (`timeline.json`), and the
way back to them once Redis keeps only the job's summary (`worker.ledger.compaction`).

The document holds the record's fields and objects exactly as Redis held them and every log entry
with its stream id, so a reader rebuilds the same `JobRecord` and the same log. Once a summary
names it, it never changes: a reader keeps the most recent it read, and paging through finished
jobs costs each one S3 GET at most once.
"""

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from worker.landing.storage import ObjectStore, json_blob
from worker.ledger.log import LogEntry

TIMELINE = "timeline.json"
VERSION = 1
# The bytes of timelines a process keeps read: a few KB for most jobs, a long log's more; past
# it the least recently read go, so paging through old jobs never grows memory past it.
CACHED_BYTES = 32 * 1024 * 1024


class ArchiveMissing(Exception):
    """A summary names a timeline S3 does not hold (deleted by hand, or another bucket)."""


@dataclass(frozen=True)
class Archived:
    """A finished job as Redis held it: the record's hash, its objects' hash, its log."""

    fields: dict[str, str]
    objects: dict[str, str]  # index -> the stored object as JSON
    entries: list[LogEntry]

    def document(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "record": self.fields,
            "objects": self.objects,
            "log": [entry.public() for entry in self.entries],
        }

    @classmethod
    def from_document(cls, raw: dict[str, Any]) -> "Archived":
        entries = [LogEntry(**entry) for entry in raw.get("log", [])]
        return cls(dict(raw["record"]), dict(raw.get("objects", {})), entries)


class Archive:
    """Timelines in the landing bucket, under the job's own folder."""

    def __init__(self, store: ObjectStore, *, most_bytes: int = CACHED_BYTES) -> None:
        self.store = store
        self.most_bytes = most_bytes
        self._cache: OrderedDict[str, tuple[Archived, int]] = OrderedDict()
        self.cached_bytes = 0

    def key(self, folder: str) -> str:
        return self.store.key(folder, TIMELINE)

    async def write(self, folder: str, archived: Archived) -> str:
        """Write the job's timeline; returns its key. Written again if the compaction that
        wrote it found the job changed meanwhile: nothing names it until one succeeds."""
        key = self.key(folder)
        ref = archived.fields.get("ref", "")
        await self.store.put(key, json_blob(archived.document(), {"ref": ref}))
        return key

    async def read(self, key: str) -> Archived:
        kept = self._cache.get(key)
        if kept is not None:
            self._cache.move_to_end(key)
            return kept[0]
        raw = await self.store.read(key)
        if raw is None:
            raise ArchiveMissing(f"s3://{self.store.bucket}/{key} is missing")
        found = Archived.from_document(json.loads(raw))
        if len(raw) <= self.most_bytes:
            self._cache[key] = (found, len(raw))
            self.cached_bytes += len(raw)
        while self.cached_bytes > self.most_bytes:
            _, (_, size) = self._cache.popitem(last=False)
            self.cached_bytes -= size
        return found
