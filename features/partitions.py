"""A contract data directory split by cardholder into hashed buckets of Parquet, checked as it streams.

Each table is read in chunks (Parquet row groups, CSV blocks), typed and checked by the rules
`load_dataset` applies, and written into `buckets` directories by a hash of `user_id`, so one
cardholder's rows of every table share a bucket. The rules a chunk cannot decide alone (unique ids,
ids that must exist in another table) then run per bucket. Memory is bounded by a chunk and a bucket,
never a whole table; the errors are the ones `load_dataset` reports, in the same order. Pieces and
buckets run on a Dask client's workers when one is given (they must share the store's filesystem).
The content table (one row per item) is read whole, as `load_dataset` reads it.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import EVENT_TIME_COLUMNS, TABLES, ContractError, TableSpec, Violation
from features.loader import (
    Dataset,
    empty_frame,
    find_table_file,
    load_dataset,
    load_table,
    raw_chunks,
    summary_text,
)
from features.validation import (
    COLUMN_RULES,
    CROSS_RULES,
    DUPLICATE_ID,
    coerce_table,
    dangling_content,
    header_only,
    inverted_windows,
    merged,
    missing_columns,
    offending,
    parse_column,
    unknown_users,
)
from recsys.cluster import map_on_workers

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

logger = logging.getLogger(__name__)

ROW = "_row"  # 0-based row of the source file, kept to report rows and restore the file's order
KEY, RAW = "_key", "_raw"
CHUNK_ROWS = 500_000
WHOLE = "content"  # no user_id: read whole on the client
BUCKETED = tuple(name for name in TABLES if name != WHOLE)
READ_ERRORS = (pa.ArrowInvalid, UnicodeDecodeError, OSError)


def bucket_of(user_ids: pd.Series | np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each id: a fixed hash of its text modulo `buckets` (the same in every process)."""
    # each distinct id is hashed once: a table repeats its cardholders' ids many times
    array = pa.array(user_ids, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pa.array(pd.Series(user_ids, dtype=object).astype(str).to_numpy(dtype=object))
    encoded = pc.dictionary_encode(array.fill_null("None"))
    distinct = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    hashes = (pd.util.hash_array(distinct, categorize=False) % np.uint64(buckets)).astype(np.int64)
    return hashes[encoded.indices.to_numpy()]


def unique_columns(spec: TableSpec) -> list[str]:
    return [column.name for column in spec.columns if column.unique]


@dataclass(frozen=True)
class Piece:
    """Consecutive rows of one table file: a run of Parquet row groups, or a whole CSV file."""

    table: str
    path: Path
    number: int
    first_row: int
    row_groups: tuple[int, ...] | None


@dataclass
class PieceResult:
    table: str
    rows: int = 0
    violations: list[Violation] = field(default_factory=list)
    unreadable: Violation | None = None
    span: tuple[pd.Timestamp, pd.Timestamp] | None = None


class BucketWriters:
    """One Parquet file per bucket for one piece: `directory/bNNNNN/pNNNNNN.parquet`."""

    def __init__(self, directory: Path, piece: int) -> None:
        self.directory, self.piece = directory, piece
        self.writers: dict[int, pq.ParquetWriter] = {}

    def write(self, frame: pd.DataFrame, buckets: np.ndarray) -> None:
        order = np.argsort(buckets, kind="stable")
        values, starts = np.unique(buckets[order], return_index=True)
        whole = pa.Table.from_pandas(frame, preserve_index=False)
        for bucket, rows in zip(values, np.split(order, starts[1:]), strict=True):
            table = whole.take(rows)
            writer = self.writers.get(int(bucket))
            if writer is None:
                path = bucket_dir(self.directory, int(bucket)) / f"p{self.piece:06d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                # a scratch store read once, soon: writing uncompressed is about half the time
                writer = self.writers[int(bucket)] = pq.ParquetWriter(path, table.schema, compression="none")
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def bucket_dir(directory: Path, bucket: int) -> Path:
    return directory / f"b{bucket:05d}"


def read_bucket(directory: Path, bucket: int, columns: Sequence[str] | None = None,
                users: pa.Array | None = None) -> pd.DataFrame | None:
    """A bucket's rows of one table in the source file's order (None when it has none); only the rows
    of the cardholders `users` when given (filtered file by file: memory holds what is kept)."""
    files = sorted(bucket_dir(directory, bucket).glob("p*.parquet"))
    if not files:
        return None
    tables = [pq.read_table(path, columns=columns) for path in files] if users is None else [
        table.filter(pc.is_in(table["user_id"], value_set=users))
        for table in (pq.read_table(path, columns=columns) for path in files)]
    table = pa.concat_tables(tables, promote_options="default")
    frame = table.to_pandas()
    return frame.sort_values(ROW, kind="stable", ignore_index=True) if ROW in frame.columns else frame


def _header(path: Path) -> list[str]:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), [])
    return pq.ParquetFile(path).schema_arrow.names


def plan_pieces(root: Path, chunk_rows: int) -> tuple[list[Piece], dict[str, list[Violation]]]:
    """Pieces of every bucketed table, and the violations that stop a table before its rows are read
    (missing table or column, empty or unreadable file)."""
    pieces: list[Piece] = []
    refused: dict[str, list[Violation]] = {}
    for name in BUCKETED:
        spec = TABLES[name]
        path = find_table_file(root, name)
        if path is None:
            if spec.required:
                refused[name] = [Violation(name, f"{name}.parquet|csv", None, "missing required table",
                                           f"add {name}.parquet or {name}.csv to {root}")]
            continue
        if path.stat().st_size == 0:
            refused[name] = [Violation(name, path.name, None, "empty file", "the file has no header")]
            continue
        try:
            names = _header(path)
            if missing := missing_columns(spec, path.name, names):
                refused[name] = missing
                continue
            if path.suffix == ".csv":
                pieces.append(Piece(name, path, 0, 0, None))
                continue
            metadata = pq.ParquetFile(path).metadata
        except READ_ERRORS as error:
            refused[name] = [Violation(name, path.name, None, "unreadable file", str(error))]
            continue
        if metadata.num_rows == 0:
            refused[name] = [header_only(spec, path.name)]
            continue
        first, group, rows = 0, [], 0
        for index in range(metadata.num_row_groups):
            group.append(index)
            rows += metadata.row_group(index).num_rows
            if rows >= chunk_rows or index == metadata.num_row_groups - 1:
                number = sum(piece.table == name for piece in pieces)
                pieces.append(Piece(name, path, number, first, tuple(group)))
                first, group, rows = first + rows, [], 0
    return pieces, refused


def scan_piece(piece: Piece, buckets: int, store: str, chunk_rows: int = CHUNK_ROWS, keep_rows: bool = True
               ) -> PieceResult:
    """Type and check one piece chunk by chunk; write its rows (while it has no violation; only the
    ids the checks between tables need unless `keep_rows`) and its unique ids into the buckets."""
    spec = TABLES[piece.table]
    file = piece.path.name
    result = PieceResult(piece.table)
    offset = piece.first_row
    rows_out = BucketWriters(Path(store) / piece.table, piece.number)
    ids_out = {name: BucketWriters(Path(store) / f"{piece.table}.{name}", piece.number)
               for name in unique_columns(spec)}
    time_column = EVENT_TIME_COLUMNS.get(piece.table)
    try:
        for raw in raw_chunks(piece.path, spec, chunk_rows, None if piece.row_groups is None
                              else list(piece.row_groups)):
            raw = raw.reset_index(drop=True)
            numbers = np.arange(offset, offset + len(raw), dtype=np.int64)
            frame, problems = coerce_table(raw, spec, file, allow_empty=True, check_unique=False)
            result.violations += [_shifted(violation, offset) for violation in problems]
            for name, writer in ids_out.items():
                typed = parse_column(raw[name], spec.column(name))[0]
                present = typed.notna().to_numpy()
                ids = pd.DataFrame({KEY: typed[present].astype(str).to_numpy(dtype=object),
                                    RAW: raw[name][present].astype(str).to_numpy(dtype=object),
                                    ROW: numbers[present]})
                writer.write(ids, bucket_of(ids[KEY], buckets))
            if frame is not None and not result.violations and len(frame):
                if time_column is not None:
                    low, high = frame[time_column].min(), frame[time_column].max()
                    result.span = (low, high) if result.span is None else (
                        min(result.span[0], low), max(result.span[1], high))
                if not keep_rows:
                    frame = frame[[name for name in ("user_id", "content_id") if name in frame.columns]]
                frame = frame.assign(**{ROW: numbers})
                rows_out.write(frame, bucket_of(frame["user_id"], buckets))
            offset += len(raw)
    except READ_ERRORS as error:
        result.unreadable = Violation(piece.table, file, None, "unreadable file", str(error))
    finally:
        rows_out.close()
        for writer in ids_out.values():
            writer.close()
    result.rows = offset - piece.first_row
    return result


def _shifted(violation: Violation, offset: int) -> Violation:
    return dataclasses.replace(violation, rows=tuple(row + offset for row in violation.rows))


def check_bucket(bucket: int, store: str, files: dict[str, str], content_ids: list[str] | None
                 ) -> list[Violation]:
    """The rules between rows of different chunks, for one bucket: ids repeated within a table, and
    (when the content table loaded) ids missing from the content or cardholders table."""
    root = Path(store)
    found: list[Violation] = []
    for name, file in files.items():
        for column in unique_columns(TABLES[name]):
            ids = read_bucket(root / f"{name}.{column}", bucket)
            if ids is not None:
                found += offending(name, file, column, DUPLICATE_ID, "ids must be unique",
                                   ids[KEY].duplicated(keep="first"), ids[RAW], ids[ROW].to_numpy())
    if content_ids is None or "cardholders" not in files:
        return found
    holders = read_bucket(root / "cardholders", bucket, ["user_id"])
    user_ids = pd.Index([] if holders is None else holders["user_id"])
    frames = {name: read_bucket(root / name, bucket, [*wanted, ROW])
              for name, wanted in (("transactions", ["user_id"]), ("menu_clicks", ["user_id"]),
                                   ("article_reads", ["user_id", "content_id"]),
                                   ("push_log", ["user_id", "content_id"])) if name in files}
    for name in ("article_reads", "push_log"):
        if (frame := frames.get(name)) is not None:
            frame.attrs["source"] = files[name]
            found += dangling_content(name, frame, pd.Index(content_ids), frame[ROW].to_numpy())
    known = pa.array(user_ids.to_numpy(dtype=object), type=pa.string())
    for name in ("transactions", "menu_clicks", "article_reads", "push_log"):
        if (frame := frames.get(name)) is not None:
            # the whole rule runs (to name the rows) only when a set lookup finds an unknown id
            if pc.all(pc.is_in(pa.array(frame["user_id"], from_pandas=True), value_set=known)).as_py():
                continue
            frame.attrs["source"] = files[name]
            found += unknown_users(name, frame, user_ids, frame[ROW].to_numpy())
    return found


def ordered(refused: dict[str, list[Violation]], found: list[Violation]) -> list[Violation]:
    """Violations as `load_dataset` lists them: per table in contract order (each rule merged over
    chunks and buckets, in the order a column is checked), then the rules between tables of the
    tables that had no violation of their own (none at all unless both required tables did)."""
    groups: dict[tuple[str, str, str | None, str], list[Violation]] = {}
    for violation in found:
        key = (violation.table, violation.file, violation.column, violation.rule)
        groups.setdefault(key, []).append(violation)
    rules = {key: merged(parts) for key, parts in groups.items()}
    own: dict[str, list[Violation]] = {name: list(problems) for name, problems in refused.items()}
    for (table, _, _, rule), violation in rules.items():
        if rule in COLUMN_RULES:
            own.setdefault(table, []).append(violation)
    result: list[Violation] = []
    for name, spec in TABLES.items():
        if name in refused:
            result += refused[name]
        else:
            result += sorted(own.get(name, []), key=lambda v: (spec.column_names.index(v.column),
                                                               COLUMN_RULES.index(v.rule)))
    if "cardholders" in own or "content" in own:
        return result
    names = list(TABLES)
    cross = [v for (table, _, _, rule), v in rules.items() if rule in CROSS_RULES and table not in own]
    return result + sorted(cross, key=lambda v: (CROSS_RULES.index(v.rule), names.index(v.table)))


@dataclass(frozen=True)
class PartitionedDataset:
    """A valid data directory as buckets of cardholders on disk; `partition(k)` is bucket k as a
    `Dataset` (with the whole content table), which every single-process function accepts."""

    root: Path
    store: Path
    buckets: int
    content: pd.DataFrame
    present: frozenset[str]
    rows: dict[str, int]
    span: tuple[pd.Timestamp, pd.Timestamp] | None
    has_rows: bool = True

    def partition(self, bucket: int, user_ids: Sequence[str] | np.ndarray | None = None,
                  columns: Mapping[str, Sequence[str]] | None = None) -> Dataset:
        """Bucket `bucket` (only the cardholders `user_ids` of it, when given), rows in file order; with
        `columns`, only those columns of the tables it names and every other table empty."""
        if not self.has_rows:
            raise ValueError(f"{self.store} was partitioned to check it only: partition it with keep_rows")
        frames: dict[str, pd.DataFrame] = {}
        keep = None if user_ids is None else pa.array(np.asarray(user_ids, dtype=object).astype(str),
                                                      type=pa.string())
        for name in BUCKETED:
            wanted = None if columns is None else columns.get(name)
            read = name in self.present and (columns is None or wanted is not None)
            frame = read_bucket(self.store / name, bucket, None if wanted is None else [*wanted, ROW],
                                users=keep) if read else None
            if frame is None:
                empty = empty_frame(TABLES[name])
                frames[name] = empty if wanted is None else empty[list(wanted)]
                continue
            frames[name] = frame.drop(columns=ROW).reset_index(drop=True)
        return Dataset(root=self.root, content=self.content, present=self.present, **frames)

    def cardholder_rows(self, bucket: int) -> pd.DataFrame:
        """`user_id` and `row` (0-based, in the cardholders file) of the bucket's cardholders."""
        frame = read_bucket(self.store / "cardholders", bucket, ["user_id", ROW])
        if frame is None:
            return pd.DataFrame({"user_id": pd.Series([], dtype=object),
                                 "row": pd.Series([], dtype=np.int64)})
        return frame.rename(columns={ROW: "row"})

    def frame(self, name: str) -> dd.DataFrame:
        """Table `name` as a Dask dataframe with one partition per bucket."""
        import dask.dataframe as dd

        return dd.from_map(_bucket_frame, range(self.buckets), store=str(self.store), name=name,
                           present=name in self.present, enforce_metadata=False)

    def time_range(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        return self.span

    @property
    def users(self) -> int:
        return self.rows.get("cardholders", 0)

    def summary(self) -> str:
        return summary_text(self.root, self.rows, self.present, self.users, self.span)


def _bucket_frame(bucket: int, store: str, name: str, present: bool) -> pd.DataFrame:
    frame = read_bucket(Path(store) / name, bucket) if present else None
    if frame is None:
        return empty_frame(TABLES[name])
    return frame.drop(columns=ROW)


def bucket_count(root: Path, partition_size: int) -> int:
    """Buckets of about `partition_size` cardholders (one when the table cannot be counted: its
    errors are reported by the scan)."""
    return max(1, math.ceil((cardholder_count(root) or 0) / partition_size))


def partition_dataset(root: str | Path, store: str | Path, partition_size: int = 150_000,
                      client: Client | None = None, chunk_rows: int = CHUNK_ROWS, keep_rows: bool = True
                      ) -> PartitionedDataset:
    """Check `root` against the contract while splitting it into buckets under `store` (which must
    not exist yet); raise ContractError listing every broken rule, as `load_dataset` does.
    `keep_rows=False` only checks: the buckets keep ids, not rows, so `partition()` is refused."""
    root, store = Path(root), Path(store)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {root} does not exist or is not a directory")
    store.mkdir(parents=True)
    buckets = bucket_count(root, partition_size)
    content, content_problems = load_table(root, TABLES[WHOLE])
    pieces, refused = plan_pieces(root, chunk_rows)
    if content_problems:
        refused[WHOLE] = content_problems
    results: list[PieceResult] = _run(client, scan_piece, pieces, buckets=buckets, store=str(store),
                                      chunk_rows=chunk_rows, keep_rows=keep_rows)
    found: list[Violation] = []
    rows = dict.fromkeys(TABLES, 0)
    spans = []
    files = {piece.table: piece.path.name for piece in pieces}
    for result in results:
        rows[result.table] += result.rows
        found += result.violations
        spans += [result.span] if result.span is not None else []
        if result.unreadable is not None:
            refused[result.table] = [result.unreadable]
    for name, count in rows.items():
        if name in files and name not in refused and count == 0:
            refused[name] = [header_only(TABLES[name], files[name])]
    files = {name: file for name, file in files.items() if name not in refused}
    content_ids = None if content is None else content["content_id"].astype(str).tolist()
    for problems in _run(client, check_bucket, list(range(buckets)), store=str(store), files=files,
                         content_ids=content_ids):
        found += problems
    if content is not None:
        found += inverted_windows(content)
    violations = ordered(refused, found)
    if violations or content is None:
        raise ContractError(violations)
    rows[WHOLE] = len(content)
    present = frozenset(files) | {WHOLE}
    span = (min(low for low, _ in spans), max(high for _, high in spans)) if spans else None
    logger.info("partitioned %s into %d buckets under %s: %s", root, buckets, store, rows)
    return PartitionedDataset(root=root, store=store, buckets=buckets, content=content, present=present,
                              rows=rows, span=span, has_rows=keep_rows)


def _run(client: Client | None, function: Callable[..., Any], items: list[Any], **shared: Any) -> list[Any]:
    """`function(item, **shared)` for every item, on the workers when there is a client."""
    if client is None:
        return [function(item, **shared) for item in items]
    return client.gather(map_on_workers(client, function, items, **shared))


@contextmanager
def partitioned(root: str | Path, work: str | Path, partition_size: int = 150_000,
                client: Client | None = None, keep_rows: bool = True) -> Iterator[PartitionedDataset]:
    """`partition_dataset` into a fresh directory under `work`, removed afterwards."""
    Path(work).mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="partitions-", dir=work))
    try:
        yield partition_dataset(root, directory / "store", partition_size, client, keep_rows=keep_rows)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class CardholderSample:
    """The cardholders a job kept of a larger population: how many there were, how many were kept."""

    population: int
    users: int
    seed: int
    span: tuple[pd.Timestamp, pd.Timestamp] | None  # of the whole population's events

    def to_dict(self) -> dict[str, int]:
        return {"population": self.population, "users": self.users, "seed": self.seed}

    def time_range(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        return self.span


def sampled_rows(population: int, users: int, seed: int) -> np.ndarray:
    """Rows of the cardholders table kept: `users` of `population`, drawn with `seed`, in table order."""
    return np.sort(np.random.default_rng(seed).choice(population, size=users, replace=False))


def _sample_bucket(bucket: int, parts: PartitionedDataset, rows: np.ndarray
                   ) -> tuple[np.ndarray, dict[str, pd.DataFrame]]:
    holders = parts.cardholder_rows(bucket)
    kept = holders.loc[holders["row"].isin(rows).to_numpy()]
    data = parts.partition(bucket, kept["user_id"].to_numpy(dtype=object))
    # the content table stays behind: the client has it, and a copy per bucket would cross the network
    return kept["row"].to_numpy(), {name: data.table(name) for name in BUCKETED}


def sample_partitions(parts: PartitionedDataset, users: int, seed: int, client: Client | None = None
                      ) -> Dataset:
    """A `Dataset` of `users` cardholders drawn with `seed` and only their rows of every table,
    gathered bucket by bucket (on the workers with a `client`): memory holds the sample and a bucket."""
    return rows_dataset(parts, sampled_rows(parts.users, users, seed), client)


def rows_dataset(parts: PartitionedDataset, rows: np.ndarray, client: Client | None = None) -> Dataset:
    """A `Dataset` of the cardholders at sorted `rows` of the cardholders table and only their rows of
    every table, gathered bucket by bucket (on the workers with a `client`)."""
    results = _run(client, _sample_bucket, list(range(parts.buckets)), parts=parts, rows=rows)
    order = np.argsort(np.concatenate([kept for kept, _ in results]), kind="stable")
    frames = {name: pd.concat([tables[name] for _, tables in results], ignore_index=True)
              for name in BUCKETED}
    frames["cardholders"] = frames["cardholders"].iloc[order].reset_index(drop=True)
    return Dataset(root=parts.root, content=parts.content, present=parts.present, **frames)


def cardholder_count(root: Path) -> int | None:
    """Rows of the cardholders table without reading it whole (None when it cannot be counted)."""
    path = find_table_file(root, "cardholders")
    try:
        if path is None or path.stat().st_size == 0:
            return None
        if path.suffix == ".csv":
            return sum(batch.num_rows for batch in pacsv.open_csv(path))
        return pq.ParquetFile(path).metadata.num_rows
    except READ_ERRORS:
        return None


def load_sample(root: str | Path, users: int | None, seed: int, work: str | Path,
                partition_size: int = 150_000,
                cluster: Callable[[], AbstractContextManager[Client]] | None = None
                ) -> tuple[Dataset, CardholderSample | None]:
    """`load_dataset(root)` when it has at most `users` cardholders (or `users` is None); else the
    whole directory is checked while streaming and only a seeded sample of `users` cardholders with
    their rows is loaded: on the workers of the client `cluster()` opens when given (opened only to
    sample, closed before this returns), else in this process. Returns the data and the sample taken,
    if any."""
    root = Path(root)
    population = cardholder_count(root) if root.is_dir() else None
    if users is None or population is None or population <= users:
        return load_dataset(root), None
    with cluster() if cluster is not None else nullcontext() as client, \
            partitioned(root, work, partition_size, client) as parts:
        data = sample_partitions(parts, users, seed, client)
    logger.info("sampled %d of %d cardholders (seed %d) from %s", users, parts.users, seed, root)
    return data, CardholderSample(parts.users, users, seed, parts.span)
