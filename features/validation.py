"""Typing and rule checks for one contract table, and the checks that span tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache
from zoneinfo import available_timezones

import numpy as np
import pandas as pd

from features.contract import Column, TableSpec, Violation

MAX_ROWS_SHOWN = 5
DUPLICATE_ID = "duplicate id"
# the order `coerce_table` checks a column in, and `check_cross_table` checks tables in
COLUMN_RULES = ("wrong type", "missing value", "value not allowed", DUPLICATE_ID, "card-number-like id",
                "malformed MCC", "unknown time zone")
DANGLING_CONTENT, UNKNOWN_USER, INVERTED_WINDOW = ("dangling content_id", "unknown user_id",
                                                   "inverted validity window")
CROSS_RULES = (DANGLING_CONTENT, UNKNOWN_USER, INVERTED_WINDOW)
CARD_NUMBER_PATTERN = r"\d(?:[ -]?\d){12,18}"
MCC_PATTERN = r"\d{4}"
TRUE_WORDS = frozenset({"true", "t", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "0", "no", "n"})


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def offending(
    table: str, file: str, column: str | None, rule: str, detail: str,
    mask: np.ndarray | pd.Series, values: pd.Series | None = None, row_numbers: np.ndarray | None = None,
) -> list[Violation]:
    """A violation naming the first offending rows (1-based data rows), or nothing if none offend.

    `row_numbers` gives each row's 0-based place in the whole table, for a part of one."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    if positions.size == 0:
        return []
    first = positions[:MAX_ROWS_SHOWN]
    shown = tuple(str(values.iloc[i]) for i in first) if values is not None else ()
    rows = first if row_numbers is None else np.asarray(row_numbers)[first]
    return [Violation(table, file, column, rule, detail, tuple(int(i) + 1 for i in rows), shown,
                      count=int(positions.size))]


def merged(violations: list[Violation]) -> Violation:
    """One violation from the same rule broken in several chunks of a table (rows already global):
    counts added, the first offending rows of all."""
    first = violations[0]
    pairs = sorted((row, value) for violation in violations
                   for row, value in zip(violation.rows, violation.values or (None,) * len(violation.rows),
                                         strict=True))[:MAX_ROWS_SHOWN]
    shown = tuple(value for _, value in pairs) if first.values else ()
    return dataclasses.replace(first, rows=tuple(row for row, _ in pairs), values=shown,
                               count=sum(violation.count or 0 for violation in violations))


def null_mask(series: pd.Series) -> pd.Series:
    mask = series.isna()
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        mask |= series.astype("string").str.strip().fillna("").eq("")
    return mask


def parse_column(series: pd.Series, column: Column) -> tuple[pd.Series, pd.Series]:
    """Typed values and a mask of rows whose non-empty value does not parse as the column's kind."""
    missing = null_mask(series)
    kind = column.kind
    if kind == "string":
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            return series.astype("string"), ~missing
        text = series.astype("string").str.strip()
        return text.mask(missing), pd.Series(False, index=series.index)
    if kind in ("int", "float"):
        numbers = pd.to_numeric(series.where(~missing), errors="coerce")
        bad = numbers.isna() & ~missing
        if kind == "int":
            fractional = numbers.notna() & (numbers.round() != numbers)
            bad |= fractional
            return numbers.where(~bad).astype("Float64").round().astype("Int64"), bad
        return numbers.astype("float64"), bad
    if kind == "bool":
        if pd.api.types.is_bool_dtype(series):
            return series.astype("boolean"), pd.Series(False, index=series.index)
        words = series.astype("string").str.strip().str.lower()
        truth = words.isin(TRUE_WORDS)
        falsity = words.isin(FALSE_WORDS)
        bad = ~(truth | falsity) & ~missing
        typed = pd.Series(pd.NA, index=series.index, dtype="boolean")
        typed[truth.fillna(False).to_numpy()] = True
        typed[falsity.fillna(False).to_numpy()] = False
        return typed, bad
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series if getattr(series.dt, "tz", None) else series.dt.tz_localize("UTC")
        stamps = stamps.dt.tz_convert("UTC")
        bad = pd.Series(False, index=series.index)
    else:
        text = series.astype("string").str.strip().mask(missing)
        stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        bad = stamps.isna() & ~missing
    stamps = stamps.astype("datetime64[us, UTC]")
    if kind == "date":
        stamps = stamps.dt.normalize()
    return stamps, bad


def coerce_table(
    raw: pd.DataFrame, spec: TableSpec, file: str, allow_empty: bool = False, check_unique: bool = True
) -> tuple[pd.DataFrame | None, list[Violation]]:
    """Type every contract column and check its column-level rules (`check_unique=False`: all but
    unique ids, for a chunk of a table whose ids are checked across chunks)."""
    name = spec.name
    if missing := missing_columns(spec, file, raw.columns):
        return None, missing
    if raw.empty and not allow_empty:
        return None, [header_only(spec, file)]
    raw = raw.reset_index(drop=True)
    typed: dict[str, pd.Series] = {}
    violations: list[Violation] = []
    for column in spec.columns:
        values, bad = parse_column(raw[column.name], column)
        violations += offending(name, file, column.name, "wrong type",
                                f"expected {column.kind}", bad, raw[column.name])
        typed[column.name] = values
        violations += column_rules(name, file, column, values, raw[column.name], bad, check_unique)
    if violations:
        return None, violations
    frame = apply_contract_defaults(pd.DataFrame(typed))
    frame.attrs["source"] = file
    return frame, []


def missing_columns(spec: TableSpec, file: str, present: Iterable[str]) -> list[Violation]:
    names = set(present)
    return [Violation(spec.name, file, column, "missing required column", f"add column '{column}'")
            for column in spec.column_names if column not in names]


def header_only(spec: TableSpec, file: str) -> Violation:
    return Violation(spec.name, file, None, "empty file",
                     "the file has a header but no rows; remove it if the table is optional")


CONTRACT_DEFAULTS = {"push_opt_in": True, "transactional": False, "muted": False}


def apply_contract_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill the empties the contract gives a meaning to (`push_opt_in` empty means true, ...)."""
    for column, default in CONTRACT_DEFAULTS.items():
        if column in frame.columns:
            frame[column] = frame[column].fillna(default).astype(bool)
    return frame


def column_rules(
    table: str, file: str, column: Column, values: pd.Series, raw: pd.Series, unparsed: pd.Series,
    check_unique: bool = True,
) -> list[Violation]:
    found: list[Violation] = []
    present = values.notna()
    if not column.nullable:
        found += offending(table, file, column.name, "missing value",
                           "this column may not be empty", ~present & ~unparsed)
    if column.choices is not None:
        as_text = values.astype("string")
        found += offending(table, file, column.name, "value not allowed",
                           f"allowed: {', '.join(sorted(column.choices))}",
                           present & ~as_text.isin(column.choices).fillna(False), raw)
    if column.unique and check_unique:
        found += offending(table, file, column.name, DUPLICATE_ID,
                           "ids must be unique", present & values.duplicated(keep="first"), raw)
    if column.is_id:
        looks_like_card = values.astype("string").str.fullmatch(CARD_NUMBER_PATTERN).fillna(False)
        found += offending(table, file, column.name, "card-number-like id",
                           "a 13-19 digit number looks like a card number; export pseudonymous ids",
                           looks_like_card)
    if column.name == "mcc":
        found += offending(table, file, "mcc", "malformed MCC", "expected 4 digits",
                           present & ~values.astype("string").str.fullmatch(MCC_PATTERN).fillna(False),
                           raw)
    if column.name == "timezone":
        found += offending(table, file, "timezone", "unknown time zone",
                           "expected an IANA name such as Asia/Shanghai, or empty",
                           present & ~values.isin(known_timezones()), raw)
    return found


def check_cross_table(frames: dict[str, pd.DataFrame]) -> list[Violation]:
    """Rules between tables: ids that must exist elsewhere, validity windows."""
    found: list[Violation] = []
    content_ids = frames["content"]["content_id"]
    user_ids = frames["cardholders"]["user_id"]
    for name in ("article_reads", "push_log"):
        if name in frames:
            found += dangling_content(name, frames[name], content_ids)
    for name in ("transactions", "menu_clicks", "article_reads", "push_log"):
        if name in frames:
            found += unknown_users(name, frames[name], user_ids)
    return found + inverted_windows(frames["content"])


def dangling_content(name: str, frame: pd.DataFrame, content_ids: pd.Series | pd.Index,
                     row_numbers: np.ndarray | None = None) -> list[Violation]:
    return offending(name, frame.attrs.get("source", name), "content_id", DANGLING_CONTENT,
                     "not in the content table", ~frame["content_id"].isin(content_ids), frame["content_id"],
                     row_numbers)


def unknown_users(name: str, frame: pd.DataFrame, user_ids: pd.Series | pd.Index,
                  row_numbers: np.ndarray | None = None) -> list[Violation]:
    return offending(name, frame.attrs.get("source", name), "user_id", UNKNOWN_USER,
                     "not in the cardholders table", ~frame["user_id"].isin(user_ids), frame["user_id"],
                     row_numbers)


def inverted_windows(content: pd.DataFrame) -> list[Violation]:
    inverted = (content["valid_from"] > content["valid_to"]).fillna(False)
    return offending("content", content.attrs.get("source", "content"), "valid_to", INVERTED_WINDOW,
                     "valid_to is before valid_from", inverted, content["content_id"])
