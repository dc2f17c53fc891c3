"""Typing and rule checks for one contract table, and the checks that span tables."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import available_timezones

import numpy as np
import pandas as pd

from features.contract import Column, TableSpec, Violation

MAX_ROWS_SHOWN = 5
CARD_NUMBER_PATTERN = r"\d(?:[ -]?\d){12,18}"
MCC_PATTERN = r"\d{4}"
TRUE_WORDS = frozenset({"true", "t", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "0", "no", "n"})


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def offending(
    table: str, file: str, column: str | None, rule: str, detail: str,
    mask: np.ndarray | pd.Series, values: pd.Series | None = None,
) -> list[Violation]:
    """A violation naming the first offending rows (1-based data rows), or nothing if none offend."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    if positions.size == 0:
        return []
    first = positions[:MAX_ROWS_SHOWN]
    shown = tuple(str(values.iloc[i]) for i in first) if values is not None else ()
    detail = f"{detail} ({positions.size:,} row(s))"
    return [Violation(table, file, column, rule, detail, tuple(int(i) + 1 for i in first), shown)]


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
    raw: pd.DataFrame, spec: TableSpec, file: str, allow_empty: bool = False
) -> tuple[pd.DataFrame | None, list[Violation]]:
    """Type every contract column and check its column-level rules."""
    name = spec.name
    missing_columns = [c for c in spec.column_names if c not in raw.columns]
    if missing_columns:
        return None, [
            Violation(name, file, column, "missing required column", f"add column '{column}'")
            for column in missing_columns
        ]
    if raw.empty and not allow_empty:
        return None, [
            Violation(name, file, None, "empty file",
                      "the file has a header but no rows; remove it if the table is optional")
        ]
    raw = raw.reset_index(drop=True)
    typed: dict[str, pd.Series] = {}
    violations: list[Violation] = []
    for column in spec.columns:
        values, bad = parse_column(raw[column.name], column)
        violations += offending(name, file, column.name, "wrong type",
                                f"expected {column.kind}", bad, raw[column.name])
        typed[column.name] = values
        violations += column_rules(name, file, column, values, raw[column.name], bad)
    if violations:
        return None, violations
    frame = apply_contract_defaults(pd.DataFrame(typed))
    frame.attrs["source"] = file
    return frame, []


CONTRACT_DEFAULTS = {"push_opt_in": True, "transactional": False, "muted": False}


def apply_contract_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill the empties the contract gives a meaning to (`push_opt_in` empty means true, ...)."""
    for column, default in CONTRACT_DEFAULTS.items():
        if column in frame.columns:
            frame[column] = frame[column].fillna(default).astype(bool)
    return frame


def column_rules(
    table: str, file: str, column: Column, values: pd.Series, raw: pd.Series, unparsed: pd.Series
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
    if column.unique:
        found += offending(table, file, column.name, "duplicate id",
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
            frame = frames[name]
            found += offending(name, frame.attrs.get("source", name), "content_id", "dangling content_id",
                               "not in the content table",
                               ~frame["content_id"].isin(content_ids), frame["content_id"])
    for name in ("transactions", "menu_clicks", "article_reads", "push_log"):
        if name in frames:
            frame = frames[name]
            found += offending(name, frame.attrs.get("source", name), "user_id", "unknown user_id",
                               "not in the cardholders table",
                               ~frame["user_id"].isin(user_ids), frame["user_id"])
    content = frames["content"]
    inverted = (content["valid_from"] > content["valid_to"]).fillna(False)
    found += offending("content", content.attrs.get("source", "content"), "valid_to",
                       "inverted validity window", "valid_to is before valid_from",
                       inverted, content["content_id"])
    return found
