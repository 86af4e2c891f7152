"""Interactions folded in at serving time: a durable log, and the store replicas share.

``POST /interactions`` is acknowledged only after the interaction is in the log, so a
replica restart, a hot reload or a new replica replays it and nothing acknowledged is
lost. The log is JSON lines in the data contract's columns (``user_id``, ``item_id``,
``domain``, ``timestamp``, ``weight``), so retraining ingests it like any other input
(``graphtrain run --input <log>``).

- On a local (or mounted) path every record is appended to this store's own file,
  ``interactions-<started>-<id>.jsonl``, and fsynced.
- Object storage has no append, so every record becomes one small object,
  ``interactions-<started>-<id>-<seq>.jsonl``.

:class:`InteractionStore` is one Ray actor per Serve app (named, created by the first
replica that needs it). It writes the log, keeps every record in order, and hands
replicas the records they have not seen yet (``since``), so a user's interaction
posted through one replica shows in the next answer of any replica.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pyarrow.fs as pafs

from graphtrain import storage

LOG_PREFIX = "interactions-"


def default_log_uri(model_uri: str) -> str:
    """``interactions/`` beside the model folder (the model artifact itself is never
    written after it is committed)."""
    return storage.sibling(model_uri, "interactions")


def record(user_id: str, item_id: str, domain: str, weight: float, timestamp: int | None = None) -> dict:
    return {
        "user_id": str(user_id), "item_id": str(item_id), "domain": str(domain),
        "weight": float(weight), "timestamp": int(time.time() if timestamp is None else timestamp),
    }


class InteractionLog:
    """Append-only JSON-lines log under a storage URI."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.path = storage.filesystem(uri)
        self.fs.create_dir(self.path, recursive=True)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.name = f"{LOG_PREFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        self.count = 0
        self._file = open(os.path.join(self.path, self.name + ".jsonl"), "ab") if self.local else None

    def append(self, rec: dict) -> None:
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
        else:
            with self.fs.open_output_stream(f"{self.path}/{self.name}-{self.count:09d}.jsonl") as out:
                out.write(line)
        self.count += 1

    def replay(self) -> list[dict]:
        """Every record in the log, oldest file first, in file order (a truncated last
        line, from a crash mid-write, is skipped)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False))
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File and os.path.basename(i.path).startswith(LOG_PREFIX))
        records = []
        for path in files:
            with self.fs.open_input_stream(path) as f:
                for line in f.read().decode().splitlines():
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue
        return records

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class InteractionStore:
    """The app's folded-in interactions, in order (wrapped by ``ray.remote``)."""

    def __init__(self, log_uri: str):
        self.log = InteractionLog(log_uri)
        self.records = self.log.replay()

    def add(self, rec: dict) -> int:
        """Log ``rec`` durably; returns the number of records after it."""
        self.log.append(rec)
        self.records.append(rec)
        return len(self.records)

    def since(self, seen: int) -> tuple[int, list[dict]]:
        """(total, the records after the first ``seen``)."""
        return len(self.records), self.records[seen:]

    def log_uri(self) -> str:
        return self.log.uri
