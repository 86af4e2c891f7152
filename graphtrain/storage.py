"""URIs to filesystems, and atomic artifact writes.

Every stage writes its artifact into a staging location and commits it with a marker
file (``_SUCCESS``) last, so a crash never leaves a half-written artifact that a later
stage would read. Any URI that pyarrow understands works (plain paths, ``file://``,
``s3://``, ``gs://``); other fsspec protocols (``abfs://`` ...) go through fsspec.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from typing import Callable, Iterator
from urllib.parse import urlparse

import pyarrow.fs as pafs

from graphtrain.errors import ArtifactError

MARKER = "_SUCCESS"


def is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> str:
    """Absolute local path of a plain path or ``file://`` URI."""
    if not is_local(uri):
        raise ValueError(f"{uri!r} is not a local path")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return os.path.abspath(os.path.expanduser(uri))


def join(uri: str, *parts: str) -> str:
    if is_local(uri):
        return os.path.join(local_path(uri), *parts)
    return "/".join([uri.rstrip("/"), *parts])


def sibling(uri: str, name: str) -> str:
    """``name`` in the folder that holds ``uri`` (beside it)."""
    uri = uri.rstrip("/")
    if is_local(uri):
        return os.path.join(os.path.dirname(local_path(uri)), name)
    return uri.rsplit("/", 1)[0] + "/" + name


def filesystem(uri: str, storage_options: dict | None = None) -> tuple[pafs.FileSystem, str]:
    """Return ``(pyarrow filesystem, path inside it)`` for any supported URI.

    Credentials and endpoints come from the environment (``AWS_*``, ``AWS_ENDPOINT_URL``,
    ``GOOGLE_*``) or from ``storage_options``: for s3:// the keyword arguments of
    ``pyarrow.fs.S3FileSystem`` (``endpoint_override``, ``access_key``, ``secret_key``,
    ``region``, ``scheme``...), for gs:// those of ``GcsFileSystem``, for other
    protocols those of the fsspec implementation.
    """
    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme in ("s3", "gs", "gcs"):
        if not storage_options:
            return pafs.FileSystem.from_uri(uri)
        cls = pafs.S3FileSystem if scheme == "s3" else pafs.GcsFileSystem
        return cls(**storage_options), f"{parsed.netloc}{parsed.path}".rstrip("/")
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def exists(uri: str, storage_options: dict | None = None) -> bool:
    fs, path = filesystem(uri, storage_options)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_committed(uri: str, storage_options: dict | None = None) -> bool:
    return exists(join(uri, MARKER), storage_options)


def require_artifact(uri: str, produced_by: str, storage_options: dict | None = None) -> None:
    """Fail with a fix-it message unless ``uri`` holds a committed artifact."""
    if not is_committed(uri, storage_options):
        raise ArtifactError(
            f"no committed artifact at {uri!r} (missing {MARKER}); run `graphtrain {produced_by}` "
            "to produce it, or check the URI"
        )


def read_json(uri: str, storage_options: dict | None = None) -> dict:
    fs, path = filesystem(uri, storage_options)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_json(uri: str, obj: dict) -> None:
    """Write JSON to any URI as one whole object: locally a temp file renamed over
    the old one (readers never see half a file), remotely one PUT."""
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    if is_local(uri):
        path = local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    fs, path = filesystem(uri)
    with fs.open_output_stream(path) as f:
        f.write(data)


def list_parquet(fs: pafs.FileSystem, directory: str) -> list[str]:
    """Parquet files directly under ``directory`` (a path in ``fs``), sorted; none
    when it is missing."""
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))


def prepare_parent(fs: pafs.FileSystem, path: str) -> None:
    """Create ``path``'s folder where the filesystem has folders (object stores do not)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(os.path.dirname(path), recursive=True)


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write one file (one PUT on an object store)."""
    prepare_parent(fs, path)
    with fs.open_output_stream(path) as out:
        out.write(data)


@contextlib.contextmanager
def atomic_artifact(uri: str, storage_options: dict | None = None) -> Iterator[str]:
    """Yield a local staging directory; on success it becomes the artifact at ``uri``.

    Local: the staging directory sits beside the target and is renamed into place
    (an older artifact at ``uri`` is replaced). Remote: files are uploaded, then the
    marker is written last. On an exception nothing is committed.
    """
    if is_local(uri):
        final = local_path(uri)
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        staging = os.path.join(parent, f".{os.path.basename(final)}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(staging)
        try:
            yield staging
            _commit_local(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return
    staging = tempfile.mkdtemp(prefix="graphtrain-artifact-")
    try:
        yield staging
        fs, path = filesystem(uri, storage_options)
        fs.delete_dir_contents(path, missing_dir_ok=True)
        pafs.copy_files(staging, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        with fs.open_output_stream(f"{path}/{MARKER}"):
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


SCRATCH = "_work"


@contextlib.contextmanager
def staged_artifact(uri: str, storage_options: dict | None = None) -> Iterator[str]:
    """Yield a staging URI on the artifact's own storage, which any worker of the
    cluster can write to; on success it becomes the artifact at ``uri``.

    Its ``_work/`` folder is scratch space and is never committed. Local: the
    staging folder sits beside the target and is renamed into place. Remote: the
    staged objects are copied to ``uri`` inside the store, then the marker is
    written last. On an exception nothing is committed and the staging is removed.
    """
    name = f".{os.path.basename(uri.rstrip('/'))}.tmp-{uuid.uuid4().hex[:8]}"
    if is_local(uri):
        final = local_path(uri)
        staging = os.path.join(os.path.dirname(final), name)
        os.makedirs(staging)
        try:
            yield staging
            shutil.rmtree(os.path.join(staging, SCRATCH), ignore_errors=True)
            _commit_local(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return
    fs, path = filesystem(uri, storage_options)
    parent = path.rstrip("/").rsplit("/", 1)[0]
    staging_path = f"{parent}/{name}"
    staging_uri = uri.rstrip("/").rsplit("/", 1)[0] + "/" + name
    try:
        yield staging_uri
        files = [
            info.path
            for info in fs.get_file_info(pafs.FileSelector(staging_path, recursive=True, allow_not_found=True))
            if info.type == pafs.FileType.File and not info.path.startswith(f"{staging_path}/{SCRATCH}/")
        ]
        fs.delete_dir_contents(path, missing_dir_ok=True)
        for source in files:
            fs.copy_file(source, path + source[len(staging_path) :])
        with fs.open_output_stream(f"{path}/{MARKER}"):
            pass
    finally:
        if fs.get_file_info(staging_path).type != pafs.FileType.NotFound:
            fs.delete_dir(staging_path)


def _commit_local(staging: str, final: str) -> None:
    """Mark ``staging`` committed and rename it to ``final``, replacing an older one."""
    with open(os.path.join(staging, MARKER), "w"):
        pass
    if os.path.exists(final):
        old = f"{staging}.old"
        os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old)
    else:
        os.rename(staging, final)


def materialize(uri: str, cache_dir: str | None = None, storage_options: dict | None = None,
                skip: Callable[[str], bool] | None = None) -> str:
    """Local directory holding the artifact at ``uri`` (downloaded if remote). With
    ``skip``, files whose path relative to the artifact it accepts stay behind."""
    if is_local(uri):
        return local_path(uri)
    fs, path = filesystem(uri, storage_options)
    target = cache_dir or tempfile.mkdtemp(prefix="graphtrain-download-")
    if skip is None:
        pafs.copy_files(path, target, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        return target
    local = pafs.LocalFileSystem()
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        relative = info.path[len(path):].lstrip("/")
        if info.type != pafs.FileType.File or skip(relative):
            continue
        os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
        pafs.copy_files(info.path, os.path.join(target, relative), source_filesystem=fs, destination_filesystem=local)
    return target
