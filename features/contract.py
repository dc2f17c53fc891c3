"""The data contract (docs/data-contract.md) as data: tables, columns, types and the errors that cite them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["string", "int", "float", "bool", "timestamp", "date"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    nullable: bool = True
    unique: bool = False
    choices: frozenset[str] | None = None
    is_id: bool = False


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: bool
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


CONTENT_KINDS = frozenset({"article", "promotion", "activity", "reminder"})
MENU_KEYS = (
    "bill_query",
    "repayment",
    "installment",
    "limit_increase",
    "points_mall",
    "card_activation",
    "customer_service",
    "promotions",
)
DEFAULT_TIMEZONE = "Asia/Shanghai"

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "cardholders",
            required=True,
            columns=(
                Column("user_id", "string", nullable=False, unique=True, is_id=True),
                Column("birth_year", "int"),
                Column("gender", "string", choices=frozenset({"M", "F"})),
                Column("city_tier", "int", choices=frozenset({"1", "2", "3", "4", "5"})),
                Column("card_tier", "string"),
                Column("credit_limit", "float"),
                Column("opened_at", "date"),
                Column("timezone", "string"),
                Column("push_opt_in", "bool"),
            ),
        ),
        TableSpec(
            "transactions",
            required=False,
            columns=(
                Column("user_id", "string", nullable=False, is_id=True),
                Column("ts", "timestamp", nullable=False),
                Column("amount", "float", nullable=False),
                Column("mcc", "string", nullable=False),
                Column("channel", "string", choices=frozenset({"online", "offline"})),
                Column("overseas", "bool"),
            ),
        ),
        TableSpec(
            "menu_clicks",
            required=False,
            columns=(
                Column("user_id", "string", nullable=False, is_id=True),
                Column("ts", "timestamp", nullable=False),
                Column("menu_key", "string", nullable=False),
            ),
        ),
        TableSpec(
            "article_reads",
            required=False,
            columns=(
                Column("user_id", "string", nullable=False, is_id=True),
                Column("ts", "timestamp", nullable=False),
                Column("content_id", "string", nullable=False, is_id=True),
                Column("dwell_seconds", "float"),
            ),
        ),
        TableSpec(
            "content",
            required=True,
            columns=(
                Column("content_id", "string", nullable=False, unique=True, is_id=True),
                Column("title", "string", nullable=False),
                Column("kind", "string", nullable=False, choices=CONTENT_KINDS),
                Column("tags", "string"),
                Column("valid_from", "timestamp"),
                Column("valid_to", "timestamp"),
                Column("card_tiers", "string"),
                Column("transactional", "bool"),
            ),
        ),
        TableSpec(
            "push_log",
            required=False,
            columns=(
                Column("push_id", "string", nullable=False, unique=True, is_id=True),
                Column("user_id", "string", nullable=False, is_id=True),
                Column("content_id", "string", nullable=False, is_id=True),
                Column("sent_ts", "timestamp", nullable=False),
                Column("opened_ts", "timestamp"),
                Column("muted", "bool"),
            ),
        ),
    )
}

EVENT_TIME_COLUMNS = {
    "transactions": "ts",
    "menu_clicks": "ts",
    "article_reads": "ts",
    "push_log": "sent_ts",
}


@dataclass(frozen=True)
class Violation:
    """One broken contract rule, with the place it was found."""

    table: str
    file: str
    column: str | None
    rule: str
    detail: str
    rows: tuple[int, ...] = field(default_factory=tuple)
    values: tuple[str, ...] = field(default_factory=tuple)
    count: int | None = None  # offending rows in all, when the rule is broken by rows

    def __str__(self) -> str:
        where = self.file + (f", column '{self.column}'" if self.column else "")
        text = f"{where}: {self.rule}: {self.detail}"
        if self.count is not None:
            text += f" ({self.count:,} row(s))"
        if self.rows:
            shown = [
                f"row {row} ({value!r})" if value is not None else f"row {row}"
                for row, value in zip(self.rows, self.values or (None,) * len(self.rows), strict=True)
            ]
            text += "; first offending rows: " + ", ".join(shown)
        return text


class ContractError(ValueError):
    """A data directory breaks the data contract; `violations` lists every broken rule."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {violation}" for violation in violations)
        super().__init__(
            f"the data breaks the contract in {len(violations)} place(s):\n{lines}\n"
            "Fix the export (see docs/data-contract.md) and run `recsys validate` again."
        )
