"""The model registry: numbered model versions under one storage URI, and the
``current`` pointer naming the version being served.

Layout::

    <registry>/
      current.json            {"version": 2, "promoted_at", "reason", "history": [...]}
      models/<version>/       one version; written once, never overwritten
        model/                the model artifact (committed: _SUCCESS)
        checkpoint/           the weights it was exported from (warm starts the next one)
        report.json           its evaluation report
        version.json          version, created_at, gate decision and reason, inputs
        _SUCCESS              written last: a version without it is not one
      interactions/           what Serve folded in, when it serves from the registry

Versions are the integers 1, 2, ... in the order they were added; a rejected
candidate is a version too (with its reason in ``version.json``) and is never served
unless promoted by hand. Promotion, and rollback, only rewrite ``current.json``:
locally with a rename over the old file, on object storage with one PUT (which
replaces an object whole). Serve replicas that serve from the registry watch it.

Two retrain jobs adding a version at the same moment is not guarded against beyond
the check that the version's folder does not exist yet.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pyarrow.fs as pafs

from graphtrain import storage
from graphtrain.errors import ArtifactError, ConfigError

CURRENT = "current.json"
MODELS = "models"
VERSION_INFO = "version.json"
REPORT = "report.json"
HISTORY_KEPT = 50  # promotions remembered in current.json
# What a checkpoint folder holds that a warm start needs (optimizer.pt is left out).
CHECKPOINT_FILES = ("model.pt", "model.json", "state.json", "users.parquet", "items.parquet")


@dataclass(frozen=True)
class Version:
    number: int
    uri: str
    info: dict

    @property
    def model(self) -> str:
        return storage.join(self.uri, "model")

    @property
    def checkpoint(self) -> str:
        return storage.join(self.uri, "checkpoint")

    @property
    def accepted(self) -> bool:
        return bool(self.info.get("gate", {}).get("accepted", True))


class Registry:
    def __init__(self, uri: str):
        self.uri = uri.rstrip("/") if not storage.is_local(uri) else storage.local_path(uri)
        self.fs, self.root = storage.filesystem(self.uri)

    # -- reading ---------------------------------------------------------------------
    def version_uri(self, number: int) -> str:
        return storage.join(self.uri, MODELS, str(int(number)))

    def numbers(self) -> list[int]:
        """Committed versions, oldest first."""
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{MODELS}", allow_not_found=True))
        found = [int(os.path.basename(i.path)) for i in infos
                 if i.type == pafs.FileType.Directory and os.path.basename(i.path).isdigit()]
        return sorted(n for n in found if storage.is_committed(self.version_uri(n)))

    def get(self, number: int) -> Version:
        uri = self.version_uri(number)
        if not storage.is_committed(uri):
            have = self.numbers()
            raise ConfigError("version", number, f"the registry {self.uri!r} has versions {have or 'none'}")
        return Version(int(number), uri, storage.read_json(storage.join(uri, VERSION_INFO)))

    def pointer(self) -> dict | None:
        path = storage.join(self.uri, CURRENT)
        return storage.read_json(path) if storage.exists(path) else None

    def current(self) -> Version | None:
        pointer = self.pointer()
        return None if pointer is None else self.get(pointer["version"])

    def current_model(self) -> str:
        """The model URI being served; an error naming the fix when nothing is promoted."""
        current = self.current()
        if current is None:
            raise ArtifactError(
                f"the registry {self.uri!r} has no current version; run `graphtrain retrain --registry ...` "
                "or `graphtrain models promote`"
            )
        return current.model

    def listing(self) -> list[dict]:
        serving = (self.pointer() or {}).get("version")
        rows = []
        for number in self.numbers():
            info = self.get(number).info
            gate = info.get("gate", {})
            rows.append({
                "version": number, "current": number == serving, "created_at": info.get("created_at"),
                "accepted": gate.get("accepted", True), "reason": gate.get("reason", ""),
                "metrics": info.get("metrics", {}),
            })
        return rows

    # -- writing ---------------------------------------------------------------------
    def add(self, model_uri: str, checkpoint_uri: str | None, report: dict, info: dict) -> Version:
        """Copy a committed model artifact (and the checkpoint it came from) into the
        next version's folder and commit it; returns that version."""
        storage.require_artifact(model_uri, "export")
        number = (max(self.numbers(), default=0)) + 1
        uri = self.version_uri(number)
        if storage.exists(uri):
            raise ArtifactError(f"{uri!r} exists already (another writer?); versions are never overwritten")
        info = {**info, "version": number, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with storage.staged_artifact(uri) as staging:
            _copy_tree(model_uri, storage.join(staging, "model"))
            if checkpoint_uri is not None:
                _copy_tree(checkpoint_uri, storage.join(staging, "checkpoint"), CHECKPOINT_FILES)
            storage.write_json(storage.join(staging, REPORT), report)
            storage.write_json(storage.join(staging, VERSION_INFO), info)
        return Version(number, uri, info)

    def promote(self, number: int, reason: str, force: bool = False) -> dict:
        """Make ``number`` the current version. A version the gate rejected needs
        ``force``. Returns the new pointer."""
        version = self.get(number)
        if not version.accepted and not force:
            raise ConfigError(
                "version", number, f"it was rejected ({version.info['gate'].get('reason')}); pass --force to serve it anyway"
            )
        old = self.pointer() or {}
        entry = {"version": number, "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reason": reason}
        history = ([{k: old[k] for k in ("version", "promoted_at", "reason") if k in old}] if old else []) + old.get("history", [])
        pointer = {**entry, "previous": old.get("version"), "history": history[:HISTORY_KEPT]}
        storage.write_json(storage.join(self.uri, CURRENT), pointer)
        return pointer


def _copy_tree(source_uri: str, target_uri: str, only: tuple[str, ...] | None = None) -> None:
    """Copy the files under ``source_uri`` (all, or the names in ``only``) to ``target_uri``,
    between any two storages, streaming."""
    src_fs, src = storage.filesystem(source_uri)
    dst_fs, dst = storage.filesystem(target_uri)
    dst_fs.create_dir(dst, recursive=True)
    infos = src_fs.get_file_info(pafs.FileSelector(src, recursive=True))
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(src.rstrip("/")) + 1:]
        if only is not None and relative not in only:
            continue
        target = f"{dst.rstrip('/')}/{relative}"
        if "/" in relative:
            dst_fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(info.path, target, source_filesystem=src_fs, destination_filesystem=dst_fs)
