"""Arrow schemas of the contract tables and block-wise writers (Parquet row groups or CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TableFormat = Literal["parquet", "csv"]
TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "cardholders": pa.schema([
        ("user_id", pa.string()), ("birth_year", pa.int32()), ("gender", pa.string()),
        ("city_tier", pa.int32()), ("card_tier", pa.string()), ("credit_limit", pa.float64()),
        ("opened_at", pa.date32()), ("timezone", pa.string()), ("push_opt_in", pa.bool_()),
    ]),
    "transactions": pa.schema([
        ("user_id", pa.string()), ("ts", TIMESTAMP), ("amount", pa.float64()), ("mcc", pa.string()),
        ("channel", pa.string()), ("overseas", pa.bool_()),
    ]),
    "menu_clicks": pa.schema([("user_id", pa.string()), ("ts", TIMESTAMP), ("menu_key", pa.string())]),
    "article_reads": pa.schema([
        ("user_id", pa.string()), ("ts", TIMESTAMP), ("content_id", pa.string()),
        ("dwell_seconds", pa.float64()),
    ]),
    "content": pa.schema([
        ("content_id", pa.string()), ("title", pa.string()), ("kind", pa.string()), ("tags", pa.string()),
        ("valid_from", TIMESTAMP), ("valid_to", TIMESTAMP), ("card_tiers", pa.string()),
        ("transactional", pa.bool_()),
    ]),
    "push_log": pa.schema([
        ("push_id", pa.string()), ("user_id", pa.string()), ("content_id", pa.string()),
        ("sent_ts", TIMESTAMP), ("opened_ts", TIMESTAMP), ("muted", pa.bool_()),
    ]),
}


def _iso_seconds(column: pa.ChunkedArray) -> pa.ChunkedArray:
    seconds = column.cast(pa.timestamp("s", tz="UTC"), safe=False)
    return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")


class TableSink:
    """Appends blocks of one table to ``NAME.parquet`` (a row group per block) or ``NAME.csv``."""

    def __init__(self, directory: Path, name: str, fmt: TableFormat) -> None:
        self.name = name
        self.schema = SCHEMAS[name]
        self.path = directory / f"{name}.{fmt}"
        self.rows = 0
        self._csv = fmt == "csv"
        if self._csv:
            # plain header names and ISO-8601 UTC times, the most portable CSV form
            self._handle = self.path.open("wb")
            self._handle.write((",".join(self.schema.names) + "\n").encode())
            text_schema = pa.schema([
                (f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type) for f in self.schema
            ])
            self._writer: pq.ParquetWriter | pacsv.CSVWriter = pacsv.CSVWriter(
                self._handle, text_schema,
                write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
            )
        else:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="snappy")

    def write(self, columns: dict[str, pa.Array]) -> None:
        table = pa.table(columns, schema=self.schema)
        if not table.num_rows:
            return
        if self._csv:
            table = pa.table({
                name: _iso_seconds(column)
                if pa.types.is_timestamp(column.type) else column
                for name, column in zip(table.column_names, table.columns, strict=True)
            })
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        if self._csv:
            self._handle.close()
        if self.rows == 0:
            # the contract refuses a table file without rows; an absent optional table is fine
            self.path.unlink()
