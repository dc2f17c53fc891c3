"""Partitioned reading: the same errors as `load_dataset` on broken directories (chunks of 2 rows,
so every rule spans chunks and buckets), and the buckets hold exactly the tables' rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import ContractError
from features.loader import load_dataset
from features.partitions import bucket_of, partition_dataset
from tests.contract.test_validation import CARDHOLDERS, TRANSACTIONS, VALID, write_dir

MORE_HOLDERS = "".join(f"u{i},1990,F,1,gold,1000,2020-01-01,,\n" for i in range(4, 12))
MORE_TX = "".join(f"u{i},2026-10-0{i % 9 + 1}T12:00:00Z,{i}.5,5812,online,false\n" for i in range(4, 12))

BROKEN = {
    "valid": {},
    "wrong types in several chunks": {"transactions": ("88.5", "eighty"),
                                      "cardholders": ("u1,1995", "u1,19x5")},
    "duplicate cardholder across chunks": {"cardholders": ("u11,1990", "u2,1990")},
    "duplicate push id": {"push_log": ("p2,", "p1,")},
    "duplicate content id": {"content": ("c3,Travel", "c1,Travel")},
    "dangling content": {"push_log": ("p2,u2,c3", "p2,u2,c404")},
    "unknown users in two tables": {"menu_clicks": ("u1,2026", "u99,2026"), "transactions": ("u7,", "u77,")},
    "unknown user but cardholders broken": {"menu_clicks": ("u1,2026", "u99,2026"),
                                            "cardholders": ("u3,1990", "u3,1990.5")},
    "inverted window and bad mcc": {"content": ("2026-01-01,2026-12-31", "2026-12-31,2026-01-01"),
                                    "transactions": ("5411", "54111")},
    "missing column": {"transactions": ("user_id,ts,amount,mcc", "user_id,ts,value,mcc")},
    "card-like id": {"cardholders": ("u3,", "4111111111111111,")},
}


def _tables(changes: dict[str, tuple[str, str]]) -> dict[str, str]:
    tables = {**VALID, "cardholders": CARDHOLDERS + MORE_HOLDERS, "transactions": TRANSACTIONS + MORE_TX}
    for name, (old, new) in changes.items():
        assert old in tables[name], "the test's replacement must apply"
        tables[name] = tables[name].replace(old, new)
    return tables


def _violations(call) -> list:
    try:
        call()
    except ContractError as error:
        return error.violations
    return []


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_partitioned_reading_reports_what_load_dataset_reports(tmp_path: Path, case: str, fmt: str) -> None:
    root = write_dir(tmp_path / "data", _tables(BROKEN[case]))
    if fmt == "parquet":  # row groups of 2 rows: pieces of 2 rows each
        for path in list(root.glob("*.csv")):
            if path.stem != "content":
                table = pa.csv.read_csv(path, convert_options=pa.csv.ConvertOptions(
                    column_types={name: pa.string() for name in path.read_text().splitlines()[0].split(",")}))
                pq.write_table(table, path.with_suffix(".parquet"), row_group_size=2)
                path.unlink()
    expected = _violations(lambda: load_dataset(root))
    got = _violations(lambda: partition_dataset(root, tmp_path / "store", partition_size=3, chunk_rows=2))
    assert [str(v) for v in got] == [str(v) for v in expected]
    assert got == expected
    assert (case == "valid") == (not expected)


def test_buckets_hold_every_row_once_in_file_order(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", _tables({}))
    whole = load_dataset(root)
    parts = partition_dataset(root, tmp_path / "store", partition_size=3, chunk_rows=2)
    assert parts.buckets == 4 and parts.users == 11
    assert parts.summary().replace(str(parts.root), "") == whole.summary().replace(str(whole.root), "")
    for name in ("cardholders", "transactions", "menu_clicks", "article_reads", "push_log"):
        frame = whole.table(name)
        got = [parts.partition(k).table(name) for k in range(parts.buckets)]
        for k, part in enumerate(got):
            assert (bucket_of(part["user_id"], parts.buckets) == k).all()
            rows = frame.loc[bucket_of(frame["user_id"], parts.buckets) == k].reset_index(drop=True)
            pd.testing.assert_frame_equal(part, rows)
        dask_frame = parts.frame(name).compute()
        assert len(dask_frame) == len(frame) and parts.frame(name).npartitions == parts.buckets
    assert parts.partition(0).content.equals(whole.content)


def test_a_partition_of_some_columns_is_those_columns_of_the_whole_one(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", _tables({}))
    parts = partition_dataset(root, tmp_path / "store", partition_size=3, chunk_rows=2)
    wanted = {"cardholders": ["card_tier", "user_id"], "push_log": ["user_id", "opened_ts"]}
    for k in range(parts.buckets):
        whole, some = parts.partition(k), parts.partition(k, columns=wanted)
        for name, columns in wanted.items():
            pd.testing.assert_frame_equal(some.table(name), whole.table(name)[columns])
        for name in ("transactions", "menu_clicks", "article_reads"):
            assert some.table(name).empty and list(some.table(name)) == list(whole.table(name))
    assert not parts.partition(0, columns={}).cardholders.size


def test_the_same_errors_on_the_workers(dask_client, tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", _tables(BROKEN["unknown users in two tables"]))
    expected = _violations(lambda: load_dataset(root))
    got = _violations(lambda: partition_dataset(root, tmp_path / "store", 3, dask_client, chunk_rows=2))
    assert got == expected and len(expected) == 2


def test_hash_buckets_are_stable() -> None:
    ids = np.array(["u1", "u2", "u3", "card-7"], dtype=object)
    assert bucket_of(ids, 7).tolist() == bucket_of(pd.Series(ids), 7).tolist()
    assert set(bucket_of(np.array([f"u{i}" for i in range(1000)], dtype=object), 4)) == {0, 1, 2, 3}
    assert bucket_of(ids, 1).tolist() == [0, 0, 0, 0]
