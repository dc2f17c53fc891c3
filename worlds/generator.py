"""Generate a synthetic world: a contract-valid data directory plus its hidden truth file.

Cardholders are generated in blocks (`block_size`: `BLOCK_USERS`, fewer for histories longer than
`BLOCK_DAYS` so a block's events stay about the same size), each from its own RNG stream seeded by
(seed, stream, block): the output is byte-identical for a seed, memory stays bounded by one block
whatever the number of cardholders, and every table is written a Parquet row group per block.
The directory is built under a temporary name next to ``out`` and renamed into place at the end; a
failed run leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import MENU_KEYS
from recsys.atomic import replace_directory
from worlds import catalog
from worlds.content import AHEAD_DAYS, Content, joined, make_content, upcoming_content
from worlds.content_variants import retag, to_merchants
from worlds.event_clock import DAY_US, Clock
from worlds.menu import make_menu_clicks
from worlds.population import Cardholders, make_cardholders, with_scenario
from worlds.pseudonyms import pseudonyms
from worlds.pushes import CampaignPlan, Targeting, make_pushes, plan_campaigns
from worlds.reads import make_reads
from worlds.response import ResponseModel, ResponseParams
from worlds.scenario import Scenario
from worlds.spend import make_transactions
from worlds.tables import SCHEMAS, TIMESTAMP, TableFormat, TableSink
from worlds.truth import write_truth

logger = logging.getLogger(__name__)

BLOCK_USERS = 10_000
BLOCK_DAYS = 120
DEFAULT_END = pd.Timestamp("2026-10-31T23:59:59Z")
MAX_DAYS = 730
MAX_ITEMS = 5_000
MIN_ITEMS = 5

# RNG streams (the last four are used only by non-default scenarios or horizons, so default worlds stay
# unchanged)
(_CONTENT, _PEOPLE, _SPEND, _MENU, _READS, _PUSHES, _CAMPAIGNS, _CATALOGUE_VARIANT, _SCENARIO,
 _TARGETING, _UPCOMING) = range(11)
_USER_SALT, _PUSH_SALT = 1, 2


class WorldConfigError(ValueError):
    """An argument of `recsys synth` is out of range."""


class WorldOutputError(ValueError):
    """The output directory or truth path cannot be used."""


@dataclass(frozen=True)
class WorldConfig:
    """What to generate. ``end`` is the last instant of the window and the truth's as-of time.

    ``scenario`` sets how the world is structured (`worlds.scenario`); its ``hour_preference``
    becomes the response model's ``hour_weight``. ``content_horizon_days``: promotions and activities
    keep starting until this many days after ``end`` (the default `AHEAD_DAYS`: the catalogue's own
    schedule; more adds `upcoming_content` from a stream of its own, so the history, which ends before
    any of it is valid, stays the same and only the content table and the truth gain the new items).
    """

    users: int = 10_000
    items: int = 200
    days: int = 90
    seed: int = 7
    end: pd.Timestamp = DEFAULT_END
    fmt: TableFormat = "parquet"
    params: ResponseParams = field(default_factory=ResponseParams)
    scenario: Scenario = field(default_factory=Scenario)
    content_horizon_days: int = AHEAD_DAYS

    @property
    def response_params(self) -> ResponseParams:
        if not self.scenario.hour_preference:
            return self.params
        return replace(self.params, hour_weight=self.scenario.hour_preference)

    def __post_init__(self) -> None:
        problems = list(self.scenario.problems())
        if self.params.hour_weight:
            problems.append("params.hour_weight comes from the scenario: set scenario.hour_preference")
        if self.users < 1:
            problems.append(f"--users must be at least 1, got {self.users}")
        if not MIN_ITEMS <= self.items <= MAX_ITEMS:
            problems.append(f"--items must be between {MIN_ITEMS} and {MAX_ITEMS}, got {self.items}")
        if not 1 <= self.days <= MAX_DAYS:
            problems.append(f"--days must be between 1 and {MAX_DAYS}, got {self.days}")
        if not AHEAD_DAYS <= self.content_horizon_days <= MAX_DAYS:
            problems.append(f"content horizon must be between {AHEAD_DAYS} and {MAX_DAYS} days, "
                            f"got {self.content_horizon_days}")
        if not 0 <= self.seed < 2**63:
            problems.append(f"--seed must be a non-negative integer, got {self.seed}")
        if self.fmt not in ("parquet", "csv"):
            problems.append(f"--format must be parquet or csv, got {self.fmt!r}")
        end = pd.Timestamp(self.end)
        if end.tzinfo is None:
            problems.append(f"end {self.end} has no time zone: give it in UTC, e.g. 2026-10-31T23:59:59Z")
        elif not pd.Timestamp("2000-01-01", tz="UTC") <= end <= pd.Timestamp("2100-01-01", tz="UTC"):
            problems.append(f"end {self.end} is outside 2000-2100")
        if problems:
            raise WorldConfigError("; ".join(problems))


@dataclass(frozen=True)
class WorldSummary:
    """What a run wrote and a quick check of how much personalisation matters in this world."""

    out: Path
    truth: Path
    rows: dict[str, int]
    seconds: float
    oracle_top1: float
    popular_top1: float
    never_read_share: float
    reader_share: float = float("nan")
    scenario: Scenario = field(default_factory=Scenario)

    def describe(self) -> str:
        lines = [f"wrote {self.out} in {self.seconds:.1f}s (truth: {self.truth})"]
        if not self.scenario.is_default:
            options = ", ".join(f"{key}={value}" for key, value in self.scenario.to_dict().items()
                                if key != "name")
            lines.append(f"  scenario {self.scenario.name or 'custom'}: {options}")
        lines += [f"  {name:<14}{count:>12,} rows" for name, count in self.rows.items()]
        ratio = self.oracle_top1 / self.popular_top1 if self.popular_top1 else float("nan")
        lines.append(
            f"  expected open rate of the top-1 eligible push: oracle {self.oracle_top1:.3f}, "
            f"most popular {self.popular_top1:.3f} (x{ratio:.2f})"
        )
        lines.append(f"  cardholders who never read an article: {self.never_read_share:.1%} "
                     f"(readers by trait: {self.reader_share:.1%})")
        return "\n".join(lines)


def block_size(days: int) -> int:
    """Cardholders per block: `BLOCK_USERS`, scaled down for long histories."""
    return max(500, BLOCK_USERS * BLOCK_DAYS // max(days, BLOCK_DAYS))


def default_truth_path(out: Path) -> Path:
    return out.parent / f"{out.name}.truth.npz"


def _contract_file_names() -> set[str]:
    return {f"{name}.{ext}" for name in SCHEMAS for ext in ("parquet", "csv")}


def check_destination(out: Path, truth: Path, force: bool) -> None:
    """Refuse an unusable output before any work is done."""
    if out.exists() and not out.is_dir():
        raise WorldOutputError(f"--out {out} exists and is not a directory: choose another path")
    if out.is_dir():
        existing = sorted(path.name for path in out.iterdir())
        if existing and not force:
            raise WorldOutputError(
                f"--out {out} is not empty ({len(existing)} entries): choose an empty or new directory, "
                "or pass --force to replace a previously generated world"
            )
        foreign = [name for name in existing if name not in _contract_file_names()]
        if foreign:
            raise WorldOutputError(
                f"--out {out} holds files that are not contract tables ({', '.join(foreign[:5])}): "
                "--force only replaces a data directory; remove it yourself or choose another path"
            )
    out_abs, truth_abs = out.resolve(), truth.resolve()
    if truth_abs == out_abs or out_abs in truth_abs.parents:
        raise WorldOutputError(
            f"--truth {truth} is inside the data directory {out}: the truth must stay outside it, "
            "so models cannot read it"
        )
    if truth.is_dir():
        raise WorldOutputError(f"--truth {truth} is a directory: give a file path such as world.truth.npz")
    if truth.exists() and not force:
        raise WorldOutputError(
            f"truth file {truth} already exists: pass --force to replace it, or choose another --truth"
        )


def _stamps(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.astype(np.int64), mask=null).view(TIMESTAMP)


def _strings(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, type=pa.string(), mask=null)


def _lookup(vocabulary: list[str] | tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(list(vocabulary), type=pa.string()).take(pa.array(codes.astype(np.int64)))


def content_columns(content: Content, ids: pa.Array) -> dict[str, pa.Array]:
    return {
        "content_id": ids,
        "title": _strings(content.title),
        "kind": _strings(content.kind),
        "tags": _strings(content.tags, content.tags == ""),
        "valid_from": _stamps(content.valid_from, content.valid_from < 0),
        "valid_to": _stamps(content.valid_to, content.valid_to < 0),
        "card_tiers": _strings(content.card_tiers, content.card_tiers == ""),
        "transactional": pa.array(content.transactional),
    }


def cardholder_columns(people: Cardholders, ids: pa.Array, clock: Clock) -> dict[str, pa.Array]:
    opened_days = clock.day0_us // DAY_US + people.open_day
    zones = [zone[0] or "" for zone in catalog.TIMEZONES]
    return {
        "user_id": ids,
        "birth_year": pa.array(people.birth_year.astype(np.int32), mask=people.birth_year_null),
        "gender": _strings(people.gender, people.gender == ""),
        "city_tier": pa.array(people.city_tier.astype(np.int32), mask=people.city_tier_null),
        "card_tier": _lookup(catalog.CARD_TIERS, people.tier),
        "credit_limit": pa.array(people.credit_limit, mask=people.credit_limit_null),
        "opened_at": pa.array(opened_days.astype(np.int32), mask=people.opened_at_null).view(pa.date32()),
        "timezone": pa.array(np.array(zones, dtype=object)[people.timezone], type=pa.string(),
                             mask=people.timezone == 1),
        "push_opt_in": pa.array(people.push_opt_in == 1, mask=people.push_opt_in < 0),
    }


@dataclass
class _TruthParts:
    ids: list[np.ndarray] = field(default_factory=list)
    engagement: list[np.ndarray] = field(default_factory=list)
    taste: list[np.ndarray] = field(default_factory=list)
    mute_offset: list[np.ndarray] = field(default_factory=list)
    persona: list[np.ndarray] = field(default_factory=list)
    statement_day: list[np.ndarray] = field(default_factory=list)
    reader: list[np.ndarray] = field(default_factory=list)
    peak_hour: list[np.ndarray] = field(default_factory=list)

    def add(self, people: Cardholders, ids: pa.Array) -> None:
        self.ids.append(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=str))
        self.engagement.append(people.engagement.astype(np.float32))
        self.taste.append(people.centred_taste())
        self.mute_offset.append(people.mute_offset.astype(np.float32))
        self.persona.append(people.persona.astype(np.int16))
        self.statement_day.append(people.statement_day.astype(np.int8))
        self.reader.append(people.reader.copy())
        if people.peak_hour is not None:
            self.peak_hour.append(people.peak_hour.astype(np.float32))


class _Top1Check:
    """Accumulates the oracle and most-popular top-1 expected open rates over eligible items."""

    def __init__(self, content: Content, as_of_us: int) -> None:
        valid = ((content.valid_from < 0) | (content.valid_from <= as_of_us)) & (
            (content.valid_to < 0) | (content.valid_to >= as_of_us)
        )
        self.allowed = content.tier_allowed() & (valid & ~content.transactional)[None, :]
        self.sums = np.zeros(self.allowed.shape)
        self.oracle = 0.0
        self.users = 0

    def add(self, tier: np.ndarray, open_prob: np.ndarray) -> None:
        allowed = self.allowed[tier]
        self.oracle += float(np.where(allowed, open_prob, 0.0).max(axis=1, initial=0.0).sum())
        for level in np.unique(tier):
            self.sums[level] += open_prob[tier == level].sum(axis=0)
        self.users += len(tier)

    def rates(self) -> tuple[float, float]:
        overall = self.sums.sum(axis=0)
        popular = 0.0
        for tier in range(self.allowed.shape[0]):
            if self.allowed[tier].any():
                best = np.argmax(np.where(self.allowed[tier], overall, -np.inf))
                popular += self.sums[tier, best]
        return self.oracle / max(self.users, 1), popular / max(self.users, 1)


def _sorted(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Order by (cardholder, time); events arrive nearly in that order, which a stable sort exploits."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    key = user.astype(np.int64) << 40 | (ts - ts.min()) // 1_000_000
    return np.argsort(key, kind="stable")


def _write_block(
    sinks: dict[str, TableSink],
    config: WorldConfig,
    block: int,
    people: Cardholders,
    content: Content,
    content_ids: pa.Array,
    clock: Clock,
    model: ResponseModel,
    plan: CampaignPlan,
) -> tuple[pa.Array, np.ndarray]:
    seed = config.seed
    ids = pseudonyms("u", people.index, seed, _USER_SALT)
    sinks["cardholders"].write(cardholder_columns(people, ids, clock))

    scenario = config.scenario
    tx = make_transactions(np.random.default_rng([seed, _SPEND, block]), people, clock, scenario)
    order = _sorted(tx.user, tx.ts)
    sinks["transactions"].write({
        "user_id": ids.take(pa.array(tx.user[order])),
        "ts": _stamps(tx.ts[order]),
        "amount": pa.array(tx.amount[order]),
        "mcc": pa.array(tx.mcc[order], type=pa.string()),
        "channel": pa.array(np.where(tx.online[order], "online", "offline"), type=pa.string(),
                            mask=tx.channel_null[order]),
        "overseas": pa.array(tx.overseas[order], mask=tx.overseas_null[order]),
    })

    menu = make_menu_clicks(np.random.default_rng([seed, _MENU, block]), people, clock, scenario)
    order = _sorted(menu.user, menu.ts)
    sinks["menu_clicks"].write({
        "user_id": ids.take(pa.array(menu.user[order])),
        "ts": _stamps(menu.ts[order]),
        "menu_key": _lookup(MENU_KEYS, menu.key[order]),
    })

    reads = make_reads(np.random.default_rng([seed, _READS, block]), people, content, clock)
    order = _sorted(reads.user, reads.ts)
    sinks["article_reads"].write({
        "user_id": ids.take(pa.array(reads.user[order])),
        "ts": _stamps(reads.ts[order]),
        "content_id": content_ids.take(pa.array(reads.item[order])),
        "dwell_seconds": pa.array(reads.dwell[order], mask=reads.dwell_null[order]),
    })
    readers = np.zeros(len(people), dtype=bool)
    readers[reads.user] = True

    targeting = None
    if scenario.campaign_targeting:
        targeting = Targeting(scenario.campaign_targeting, np.random.default_rng([seed, _TARGETING, block]))
    pushes = make_pushes(np.random.default_rng([seed, _PUSHES, block]), people, content, clock, model, plan,
                         targeting)
    push_numbers = (np.int64(block) << 28) + np.arange(len(pushes.user), dtype=np.int64)
    sinks["push_log"].write({
        "push_id": pseudonyms("p", push_numbers, seed, _PUSH_SALT, bits=48),
        "user_id": ids.take(pa.array(pushes.user)),
        "content_id": content_ids.take(pa.array(pushes.item)),
        "sent_ts": _stamps(pushes.sent),
        "opened_ts": _stamps(pushes.opened, pushes.opened < 0),
        "muted": pa.array(pushes.muted),
    })
    return ids, readers


def generate_world(
    config: WorldConfig,
    out: str | Path,
    truth: str | Path | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> WorldSummary:
    """Write the world's tables to ``out`` and its truth to ``truth`` (default: sibling ``<out>.truth.npz``).

    ``progress(done_users, total_users)`` is called after each block.
    """
    started = time.perf_counter()
    out = Path(out)
    truth_path = Path(truth) if truth is not None else default_truth_path(out)
    check_destination(out, truth_path, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)

    end = pd.Timestamp(config.end).tz_convert("UTC")
    clock = Clock.ending(end, config.days)
    scenario = config.scenario
    content_rng = np.random.default_rng([config.seed, _CONTENT])
    content = make_content(content_rng, config.items, clock.start_us, clock.end_us, config.days,
                           primary_weights=scenario.primary_topic_weights())
    if scenario.space.fine or scenario.tags != "topics":
        variant_rng = np.random.default_rng([config.seed, _CATALOGUE_VARIANT])
        if scenario.space.fine:
            content = to_merchants(variant_rng, content, scenario.space)
        content = retag(variant_rng, content, scenario.space, scenario.tags)
    # the whole schedule: `content` and the promotions and activities starting after its last start,
    # which no history can hold (the history is generated from `content` alone)
    catalogue = content
    if config.content_horizon_days > AHEAD_DAYS:
        upcoming_rng = np.random.default_rng([config.seed, _UPCOMING])
        upcoming = upcoming_content(upcoming_rng, content, config.days, clock.end_us,
                                    config.content_horizon_days, scenario.primary_topic_weights())
        if scenario.space.fine:
            upcoming = to_merchants(upcoming_rng, upcoming, scenario.space)
        if scenario.space.fine or scenario.tags != "topics":
            upcoming = retag(upcoming_rng, upcoming, scenario.space, scenario.tags)
        catalogue = joined(content, upcoming)
    content_ids = pa.array(content.content_id, type=pa.string())
    params = config.response_params
    campaign_rng = np.random.default_rng([config.seed, _CAMPAIGNS])
    plan = plan_campaigns(campaign_rng, content, clock, burn_in=params.window_days)

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        sinks = {name: TableSink(tmp, name, config.fmt) for name in SCHEMAS}
        try:
            catalogue_ids = pa.array(catalogue.content_id, type=pa.string())
            sinks["content"].write(content_columns(catalogue, catalogue_ids))
            parts = _TruthParts()
            check = _Top1Check(content, clock.end_us)
            never_read = 0
            readers_by_trait = 0
            per_block = block_size(config.days)
            n_blocks = -(-config.users // per_block)
            for block in range(n_blocks):
                first = block * per_block
                size = min(per_block, config.users - first)
                people = make_cardholders(
                    np.random.default_rng([config.seed, _PEOPLE, block]), first, size, end.year, config.days,
                    reader_share=scenario.reader_share,
                )
                scenario_rng = np.random.default_rng([config.seed, _SCENARIO, block])
                people = with_scenario(scenario_rng, people, scenario)
                model = ResponseModel(params, people.engagement, people.centred_taste(), people.mute_offset,
                                      content.appeal, content.topics, content.transactional, people.peak_hour)
                ids, readers = _write_block(sinks, config, block, people, content, content_ids, clock, model,
                                            plan)
                parts.add(people, ids)
                check.add(people.tier, model.open_prob_matrix())
                never_read += int((~readers).sum())
                readers_by_trait += int(people.reader.sum())
                logger.debug("block %d/%d written", block + 1, n_blocks)
                if progress is not None:
                    progress(first + size, config.users)
        finally:
            for sink in sinks.values():
                sink.close()

        full = ResponseModel(
            params,
            np.concatenate(parts.engagement),
            np.concatenate(parts.taste),
            np.concatenate(parts.mute_offset),
            catalogue.appeal,
            catalogue.topics,
            catalogue.transactional,
            np.concatenate(parts.peak_hour) if parts.peak_hour else None,
        )
        arrays = {
            "user_engagement": full.user_engagement,
            "user_taste": full.user_taste,
            "user_mute_offset": full.user_mute_offset,
            "user_persona": np.concatenate(parts.persona),
            "user_statement_day": np.concatenate(parts.statement_day),
            "user_reader": np.concatenate(parts.reader),
            "item_appeal": full.item_appeal,
            "item_topics": full.item_topics,
            "item_transactional": full.item_transactional,
        }
        if full.user_peak_hour is not None:
            arrays["user_peak_hour"] = full.user_peak_hour
        block_rows = max(1_000, 4_000_000 // len(catalogue))  # ~16 MB of open_prob per block
        write_truth(
            truth_path,
            user_ids=np.concatenate(parts.ids),
            content_ids=np.asarray(catalogue.content_id, dtype=str),
            as_of=end,
            seed=config.seed,
            topics=scenario.space.names,
            persona_names=tuple(p.name for p in catalog.PERSONAS),
            params=params,
            arrays=arrays,
            scenario=None if scenario.is_default else scenario.to_dict(),
            open_prob_blocks=(
                full.open_prob_matrix(slice(i, i + block_rows)) for i in range(0, config.users, block_rows)
            ),
        )
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    oracle, popular = check.rates()
    rows = {name: sink.rows for name, sink in sinks.items()}
    summary = WorldSummary(
        out=out,
        truth=truth_path,
        rows=rows,
        seconds=time.perf_counter() - started,
        oracle_top1=oracle,
        popular_top1=popular,
        never_read_share=never_read / config.users,
        reader_share=readers_by_trait / config.users,
        scenario=scenario,
    )
    logger.info("world of %d cardholders written to %s in %.1fs", config.users, out, summary.seconds)
    return summary

