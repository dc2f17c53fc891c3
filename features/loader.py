"""Read a contract data directory (Parquet or CSV per table) into typed, validated frames."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import (
    EVENT_TIME_COLUMNS,
    TABLES,
    ContractError,
    TableSpec,
    Violation,
)
from features.validation import check_cross_table, coerce_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Every contract table as a typed frame; an absent optional table is an empty frame."""

    root: Path
    cardholders: pd.DataFrame
    transactions: pd.DataFrame
    menu_clicks: pd.DataFrame
    article_reads: pd.DataFrame
    content: pd.DataFrame
    push_log: pd.DataFrame
    present: frozenset[str]

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def time_range(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last event time across the event tables, or None when there are no events."""
        bounds = [
            (frame[column].min(), frame[column].max())
            for name, column in EVENT_TIME_COLUMNS.items()
            if len(frame := self.table(name))
        ]
        if not bounds:
            return None
        return min(low for low, _ in bounds), max(high for _, high in bounds)

    def summary(self) -> str:
        rows = {name: len(self.table(name)) for name in TABLES}
        return summary_text(self.root, rows, self.present, self.cardholders["user_id"].nunique(),
                            self.time_range())


def summary_text(root: Path, rows: dict[str, int], present: frozenset[str], users: int,
                 span: tuple[pd.Timestamp, pd.Timestamp] | None) -> str:
    """What `recsys validate` prints for a valid directory."""
    lines = [f"data directory {root}: valid"]
    for name, spec in TABLES.items():
        state = f"{rows[name]:>12,} rows" if name in present else "     (absent)"
        lines.append(f"  {name:<14}{state}{'' if spec.required else '  optional'}")
    lines.append(f"  cardholders   {users:>12,} users")
    if span is not None:
        lines.append(f"  events from   {span[0].isoformat()} to {span[1].isoformat()}")
    return "\n".join(lines)


def find_table_file(root: Path, name: str) -> Path | None:
    candidates = [path for path in (root / f"{name}.parquet", root / f"{name}.csv") if path.exists()]
    if len(candidates) > 1:
        raise ContractError(
            [
                Violation(
                    name,
                    f"{name}.parquet and {name}.csv",
                    None,
                    "ambiguous table",
                    "both files exist: keep exactly one per table",
                )
            ]
        )
    return candidates[0] if candidates else None


def _csv_text_options(path: Path) -> pacsv.ConvertOptions:
    """Every CSV cell as text (empty stays empty), so typing errors can be located."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    return pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                strings_can_be_null=False, quoted_strings_can_be_null=False)


def read_raw(path: Path, spec: TableSpec) -> pd.DataFrame:
    """The file as read, before typing; CSV cells arrive as strings so typing errors can be located."""
    if path.stat().st_size == 0:
        return pd.DataFrame()
    if path.suffix == ".csv":
        table = pacsv.read_csv(path, convert_options=_csv_text_options(path))
    else:
        table = pq.read_table(path)
    wanted = [name for name in spec.column_names if name in table.column_names]
    return table.select(wanted).to_pandas()


def raw_chunks(path: Path, spec: TableSpec, rows: int, row_groups: list[int] | None = None
               ) -> Iterator[pd.DataFrame]:
    """The file as `read_raw` reads it, in chunks of at most `rows` rows (only `row_groups` of a
    Parquet file, when given), so a table larger than memory can be checked."""
    if path.suffix == ".csv":
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=max(1 << 20, rows * 64)),
                                convert_options=_csv_text_options(path))
        batches: Iterator[pa.RecordBatch] = iter(reader)
        names = reader.schema.names
    else:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        wanted = [name for name in spec.column_names if name in names]
        batches = parquet.iter_batches(batch_size=rows, row_groups=row_groups, columns=wanted)
    wanted = [name for name in spec.column_names if name in names]
    for batch in batches:
        yield pa.Table.from_batches([batch]).select(wanted).to_pandas()


def load_table(root: Path, spec: TableSpec) -> tuple[pd.DataFrame | None, list[Violation]]:
    path = find_table_file(root, spec.name)
    if path is None:
        if spec.required:
            return None, [
                Violation(
                    spec.name,
                    f"{spec.name}.parquet|csv",
                    None,
                    "missing required table",
                    f"add {spec.name}.parquet or {spec.name}.csv to {root}",
                )
            ]
        return None, []
    try:
        raw = read_raw(path, spec)
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as error:
        return None, [Violation(spec.name, path.name, None, "unreadable file", str(error))]
    if raw.empty and not len(raw.columns):
        return None, [Violation(spec.name, path.name, None, "empty file", "the file has no header")]
    return coerce_table(raw, spec, path.name)


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    return coerce_table(pd.DataFrame({name: pd.Series([], dtype=object) for name in spec.column_names}),
                        spec, spec.name, allow_empty=True)[0]


def load_dataset(root: str | Path) -> Dataset:
    """Load and validate every table; raise ContractError listing every broken rule."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {root} does not exist or is not a directory")
    frames: dict[str, pd.DataFrame] = {}
    violations: list[Violation] = []
    for name, spec in TABLES.items():
        frame, problems = load_table(root, spec)
        violations.extend(problems)
        if frame is not None:
            frames[name] = frame
    if "cardholders" in frames and "content" in frames:
        violations.extend(check_cross_table(frames))
    if violations:
        raise ContractError(violations)
    present = frozenset(frames)
    for name, spec in TABLES.items():
        frames.setdefault(name, empty_frame(spec))
    logger.info("loaded %s: %s", root, {name: len(frame) for name, frame in frames.items()})
    return Dataset(root=root, present=present, **frames)
