"""Every rule of the data contract, broken once, is refused with the file, column and rows named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.contract import ContractError
from features.loader import load_dataset
from qianmian.cli import app

CARDHOLDERS = """user_id,birth_year,gender,city_tier,card_tier,credit_limit,opened_at,timezone,push_opt_in
u1,1995,F,1,gold,50000,2020-01-02,Asia/Shanghai,true
u2,,M,3,classic,10000,2021-05-06,,
u3,1990,,2,platinum,80000,,Asia/Hong_Kong,false
"""
CONTENT = """content_id,title,kind,tags,valid_from,valid_to,card_tiers,transactional
c1,Dining weekend,promotion,dining|weekend,2026-01-01,2026-12-31,,false
c2,Bill due,reminder,,,,,true
c3,Travel perks,article,travel,,,platinum|diamond,
"""
READS = """user_id,ts,content_id,dwell_seconds
u1,2026-10-01T10:00:00,c1,30
u2,2026-10-02 11:00:00+08:00,c3,
"""
TRANSACTIONS = """user_id,ts,amount,mcc,channel,overseas
u1,2026-10-01T12:00:00Z,88.5,5812,offline,false
u2,2026-10-03T12:00:00Z,-20,5411,online,
"""
MENU = """user_id,ts,menu_key
u1,2026-10-04T09:00:00Z,bill_query
"""
PUSH_LOG = """push_id,user_id,content_id,sent_ts,opened_ts,muted
p1,u1,c1,2026-10-05T10:00:00Z,2026-10-05T10:05:00Z,false
p2,u2,c3,2026-10-06T10:00:00Z,,true
"""
VALID = {
    "cardholders": CARDHOLDERS,
    "content": CONTENT,
    "article_reads": READS,
    "transactions": TRANSACTIONS,
    "menu_clicks": MENU,
    "push_log": PUSH_LOG,
}


def write_dir(root: Path, tables: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (root / f"{name}.csv").write_text(text, encoding="utf-8")
    return root


def broken(tmp_path: Path, table: str, old: str, new: str) -> Path:
    tables = dict(VALID)
    assert old in tables[table], "the test's replacement must apply"
    tables[table] = tables[table].replace(old, new)
    return write_dir(tmp_path / "data", tables)


def violations_of(root: Path) -> list:
    with pytest.raises(ContractError) as caught:
        load_dataset(root)
    return caught.value.violations


def test_valid_directory_loads_typed_frames(tmp_path: Path) -> None:
    dataset = load_dataset(write_dir(tmp_path / "data", VALID))
    assert len(dataset.cardholders) == 3
    assert str(dataset.transactions["ts"].dtype) == "datetime64[us, UTC]"
    # '+08:00' is honoured and converted to UTC.
    assert dataset.article_reads["ts"].iloc[1] == pd.Timestamp("2026-10-02T03:00:00Z")
    assert dataset.cardholders["push_opt_in"].tolist() == [True, True, False]
    assert dataset.content["transactional"].tolist() == [False, True, False]
    assert dataset.push_log["muted"].tolist() == [False, True]
    assert dataset.cardholders["birth_year"].isna().tolist() == [False, True, False]


def test_quoted_csv_header_keeps_codes_as_text(tmp_path: Path) -> None:
    quoted = TRANSACTIONS.replace("user_id,ts,amount,mcc,channel,overseas",
                                  '"user_id","ts","amount","mcc","channel","overseas"')
    tables = {**VALID, "transactions": quoted.replace("5411", "0742")}
    dataset = load_dataset(write_dir(tmp_path / "data", tables))
    assert dataset.transactions["mcc"].tolist() == ["5812", "0742"]


def test_optional_tables_may_be_absent(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", {"cardholders": CARDHOLDERS, "content": CONTENT})
    dataset = load_dataset(root)
    assert dataset.present == frozenset({"cardholders", "content"})
    assert dataset.article_reads.empty and list(dataset.article_reads.columns)[:2] == ["user_id", "ts"]


def test_missing_required_table(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", {"cardholders": CARDHOLDERS})
    (found,) = violations_of(root)
    assert found.rule == "missing required table" and found.table == "content"


def test_missing_required_column(tmp_path: Path) -> None:
    root = broken(tmp_path, "transactions", "user_id,ts,amount,mcc", "user_id,ts,value,mcc")
    found = violations_of(root)
    assert [(v.file, v.column, v.rule) for v in found] == [
        ("transactions.csv", "amount", "missing required column")
    ]


def test_wrong_type_names_rows_and_values(tmp_path: Path) -> None:
    root = broken(tmp_path, "transactions", "88.5", "eighty")
    (found,) = violations_of(root)
    assert (found.column, found.rule, found.rows, found.values) == ("amount", "wrong type", (1,), ("eighty",))
    assert "transactions.csv, column 'amount'" in str(found)


def test_fractional_int_is_wrong_type(tmp_path: Path) -> None:
    root = broken(tmp_path, "cardholders", "u1,1995", "u1,1995.5")
    (found,) = violations_of(root)
    assert (found.column, found.rule) == ("birth_year", "wrong type")


def test_unparseable_timestamp(tmp_path: Path) -> None:
    root = broken(tmp_path, "menu_clicks", "2026-10-04T09:00:00Z", "yesterday")
    (found,) = violations_of(root)
    assert (found.file, found.column, found.rule, found.values) == (
        "menu_clicks.csv", "ts", "wrong type", ("yesterday",)
    )


def test_inverted_validity_window(tmp_path: Path) -> None:
    root = broken(tmp_path, "content", "2026-01-01,2026-12-31", "2026-12-31,2026-01-01")
    (found,) = violations_of(root)
    assert (found.table, found.column, found.rule, found.rows, found.values) == (
        "content", "valid_to", "inverted validity window", (1,), ("c1",)
    )


def test_naive_and_offset_timestamps_are_utc_and_dates_are_days(tmp_path: Path) -> None:
    dataset = load_dataset(write_dir(tmp_path / "data", VALID))
    assert dataset.article_reads["ts"].iloc[0] == pd.Timestamp("2026-10-01T10:00:00Z")
    assert str(dataset.article_reads["ts"].dtype) == "datetime64[us, UTC]"
    assert dataset.cardholders["opened_at"].iloc[0] == pd.Timestamp("2020-01-02T00:00:00Z")
    assert list(dataset.cardholders["push_opt_in"]) == [True, True, False]  # empty means true
    assert list(dataset.content["transactional"]) == [False, True, False]  # empty means false


def test_duplicate_id(tmp_path: Path) -> None:
    root = broken(tmp_path, "content", "c3,Travel", "c1,Travel")
    (found,) = violations_of(root)
    assert (found.column, found.rule, found.rows) == ("content_id", "duplicate id", (3,))


def test_dangling_content_id(tmp_path: Path) -> None:
    root = broken(tmp_path, "push_log", "p2,u2,c3", "p2,u2,c404")
    (found,) = violations_of(root)
    assert (found.table, found.column, found.rule, found.values) == (
        "push_log", "content_id", "dangling content_id", ("c404",)
    )


def test_unknown_user_id(tmp_path: Path) -> None:
    root = broken(tmp_path, "menu_clicks", "u1,2026-10-04", "u9,2026-10-04")
    (found,) = violations_of(root)
    assert (found.table, found.column, found.rule) == ("menu_clicks", "user_id", "unknown user_id")


@pytest.mark.parametrize("card_like", ["6222021234567890123", "4111 1111 1111 1111", "4111-1111-1111-1"])
def test_card_number_like_id(tmp_path: Path, card_like: str) -> None:
    tables = {name: text.replace("u3", card_like) for name, text in VALID.items()}
    found = violations_of(write_dir(tmp_path / "data", tables))
    assert {(v.table, v.column, v.rule) for v in found} == {
        ("cardholders", "user_id", "card-number-like id")
    }


def test_twelve_digit_id_is_not_card_like(tmp_path: Path) -> None:
    tables = {name: text.replace("u3", "123456789012") for name, text in VALID.items()}
    assert len(load_dataset(write_dir(tmp_path / "data", tables)).cardholders) == 3


def test_empty_file_and_header_only_file(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", VALID)
    (root / "menu_clicks.csv").write_text("", encoding="utf-8")
    (root / "push_log.csv").write_text("push_id,user_id,content_id,sent_ts,opened_ts,muted\n")
    found = violations_of(root)
    assert sorted((v.file, v.rule) for v in found) == [
        ("menu_clicks.csv", "empty file"),
        ("push_log.csv", "empty file"),
    ]


def test_values_outside_choices(tmp_path: Path) -> None:
    root = broken(tmp_path, "content", "c2,Bill due,reminder", "c2,Bill due,newsletter")
    (found,) = violations_of(root)
    assert (found.column, found.rule, found.values) == ("kind", "value not allowed", ("newsletter",))


def test_unknown_time_zone_and_malformed_mcc(tmp_path: Path) -> None:
    tables = dict(VALID)
    tables["cardholders"] = CARDHOLDERS.replace("Asia/Hong_Kong", "Mars/Olympus")
    tables["transactions"] = TRANSACTIONS.replace("5411", "54111")
    found = violations_of(write_dir(tmp_path / "data", tables))
    assert {(v.column, v.rule) for v in found} == {
        ("timezone", "unknown time zone"),
        ("mcc", "malformed MCC"),
    }


def test_every_broken_rule_is_reported_at_once(tmp_path: Path) -> None:
    tables = dict(VALID)
    tables["transactions"] = TRANSACTIONS.replace("88.5", "lots")
    tables["push_log"] = PUSH_LOG.replace("p2,", "p1,")
    found = violations_of(write_dir(tmp_path / "data", tables))
    assert {(v.table, v.rule) for v in found} == {
        ("transactions", "wrong type"),
        ("push_log", "duplicate id"),
    }


def test_parquet_with_native_types(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", {"content": CONTENT})
    frame = pd.read_csv(pd.io.common.StringIO(CARDHOLDERS), dtype={"user_id": str})
    frame["opened_at"] = pd.to_datetime(frame["opened_at"])
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / "cardholders.parquet")
    dataset = load_dataset(root)
    assert dataset.cardholders["user_id"].tolist() == ["u1", "u2", "u3"]
    assert str(dataset.cardholders["opened_at"].dtype) == "datetime64[us, UTC]"


def test_parquet_numeric_ids_are_checked_for_card_numbers(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", {"content": CONTENT})
    frame = pd.DataFrame({
        "user_id": [6222021234567890123, 42], "birth_year": [1990, 1991], "gender": ["F", "M"],
        "city_tier": [1, 2], "card_tier": ["gold", "gold"], "credit_limit": [1.0, 2.0],
        "opened_at": [None, None], "timezone": [None, None], "push_opt_in": [True, True],
    })
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / "cardholders.parquet")
    found = violations_of(root)
    # An integer column is the wrong type for an id, and the card-like value is named too.
    assert [(v.column, v.rule, v.rows) for v in found] == [
        ("user_id", "wrong type", (1, 2)),
        ("user_id", "card-number-like id", (1,)),
    ]


def test_both_formats_for_one_table_is_ambiguous(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "data", VALID)
    (root / "content.parquet").write_bytes(b"")
    (found,) = violations_of(root)
    assert found.rule == "ambiguous table"


def test_cli_summary_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write_dir(tmp_path / "good", VALID)
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "cardholders" in result.output and "3 users" in result.output
    assert "2026-10-01" in result.output

    bad = write_dir(tmp_path / "bad", {**VALID, "push_log": PUSH_LOG.replace("c3", "c404")})
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "push_log.csv, column 'content_id': dangling content_id" in result.output
    assert "c404" in result.output

    result = runner.invoke(app, ["validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.output
