"""Read one input file as a stream of Arrow chunks, whatever it holds.

Ingest reads each file in its own Ray task, so one file's problems stay that file's:

- The data contract's columns are read as **text** from CSV and JSON, so a column
  that is numeric in one file (or row) and text in the next does not abort the read;
  :func:`graphtrain.data.schema.validate_table` then parses every value and
  quarantines only the rows whose value breaks the contract.
- A CSV row with the wrong number of fields, or a JSON line that is not an object,
  becomes a ``malformed_row`` with its raw text.
- An empty file (no bytes, or a header only) yields no rows.
- A file that cannot be read to the end (a truncated ``.gz``, a broken Parquet
  footer) raises :class:`UnreadableFile`; the caller discards what it read of it.
- A file without a required column raises ``DataContractError``.

Columns outside the contract are never read.
"""

from __future__ import annotations

import io
import json
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from graphtrain.data import schema

CHUNK_ROWS = 500_000
CHUNK_BYTES = 64 << 20
TEXT = pa.large_string()


class UnreadableFile(Exception):
    """The file could not be read to the end; nothing from it may be kept."""


def malformed(raw: list[str]) -> pa.Table:
    """Rows that could not be parsed into fields: no contract columns, their text kept."""
    return pa.table({schema.RAW: pa.array(raw, TEXT)})


def _contract_columns(names: list[str]) -> list[str]:
    return [c for c in schema.CANONICAL if c in names]


def _csv_chunks(fs: pafs.FileSystem, path: str, domain_override: str | None) -> Iterator[pa.Table]:
    with fs.open_input_stream(path) as stream:  # decompresses by extension (.gz, .bz2, ...)
        try:
            probe = pacsv.open_csv(
                stream, read_options=pacsv.ReadOptions(block_size=1 << 20),
                parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
            )
            header = probe.schema.names
        except pa.ArrowInvalid as err:
            if "Empty CSV file" in str(err):
                return
            raise
    columns = _contract_columns(header)
    schema.check_columns(header, domain_override=domain_override, where=path)
    bad_rows: list[str] = []

    def on_invalid(row) -> str:
        bad_rows.append(row.text)
        return "skip"

    with fs.open_input_stream(path) as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=CHUNK_BYTES),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if bad_rows:
                yield malformed(bad_rows)
                bad_rows.clear()
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    if bad_rows:
        yield malformed(bad_rows)


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)  # numbers, booleans, lists: their JSON text, validated later


def _json_lines_chunks(fs: pafs.FileSystem, path: str, domain_override: str | None) -> Iterator[pa.Table]:
    """Line by line in Python: slower than Arrow's reader, but takes any mix of types."""
    seen: set[str] = set()
    rows: dict[str, list] = {c: [] for c in schema.CANONICAL}
    bad_rows: list[str] = []

    def flush() -> Iterator[pa.Table]:
        if bad_rows:
            yield malformed(bad_rows)
            bad_rows.clear()
        if rows["user_id"] or any(rows.values()):
            present = [c for c in schema.CANONICAL if c in seen]
            yield pa.table({c: pa.array(rows[c], TEXT) for c in present})
            for values in rows.values():
                values.clear()

    with fs.open_input_stream(path) as stream:
        for line in io.TextIOWrapper(stream, encoding="utf-8", errors="replace"):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                bad_rows.append(line.rstrip("\n"))
                continue
            seen.update(k for k in record if k in rows)
            for column, values in rows.items():
                values.append(_as_text(record.get(column)))
            if len(rows["user_id"]) >= CHUNK_ROWS:
                yield from flush()
    if seen:
        schema.check_columns(seen, domain_override=domain_override, where=path)
    yield from flush()


def _json_chunks(fs: pafs.FileSystem, path: str, domain_override: str | None) -> Iterator[pa.Table]:
    """Arrow's JSON reader when every field keeps one type; the line reader otherwise.

    The fast path reads into memory before yielding, so that a type change in a late
    block can still fall back to the line reader with nothing emitted twice.
    """
    try:
        with fs.open_input_stream(path) as stream:
            table = pajson.read_json(stream, read_options=pajson.ReadOptions(block_size=CHUNK_BYTES))
    except pa.ArrowInvalid:
        # A field whose type changes, or a malformed line; I/O errors are not ArrowInvalid.
        yield from _json_lines_chunks(fs, path, domain_override)
        return
    if table.num_columns == 0:
        return
    schema.check_columns(table.column_names, domain_override=domain_override, where=path)
    columns = _contract_columns(table.column_names)
    for batch in table.select(columns).to_batches(max_chunksize=CHUNK_ROWS):
        yield pa.Table.from_batches([batch])


def _parquet_chunks(fs: pafs.FileSystem, path: str, domain_override: str | None) -> Iterator[pa.Table]:
    with fs.open_input_file(path) as handle:
        file = pq.ParquetFile(handle)
        names = file.schema_arrow.names
        schema.check_columns(names, domain_override=domain_override, where=path)
        for batch in file.iter_batches(batch_size=CHUNK_ROWS, columns=_contract_columns(names)):
            yield pa.Table.from_batches([batch])


READERS = {"csv": _csv_chunks, "json": _json_chunks, "parquet": _parquet_chunks}


def read_chunks(fs: pafs.FileSystem, path: str, fmt: str, domain_override: str | None = None) -> Iterator[pa.Table]:
    """Chunks of the file's contract columns (text for CSV/JSON), or malformed rows.

    Raises ``DataContractError`` for a missing required column and
    :class:`UnreadableFile` when the file cannot be read to the end.
    """
    try:
        yield from READERS[fmt](fs, path, domain_override)
    except (OSError, pa.ArrowException, EOFError, UnicodeDecodeError) as err:
        raise UnreadableFile(f"{type(err).__name__}: {err}") from err
