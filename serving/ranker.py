"""Rank requests end to end: published record -> pipeline -> send or hold -> caps over the ordered list
-> top k allowed.

A batch reads every cardholder's record in one MGET, their caps state in one pipelined read when the
version has response models (`recsys.decision`), and decides all of them in one caps call.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from difflib import get_close_matches
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np

from recsys.caps.decisions import Candidate, CapRequest, UserDecision, to_ms
from recsys.caps.engine import new_push_id
from recsys.caps.policy import Policy
from recsys.caps.rules import CardholderRecord, repeat_blocked
from recsys.control import CONTROL_REASON, in_control
from recsys.decision import (
    DECISIONS_OFF,
    HOLD,
    NO_RESPONSE_MODEL,
    RECENT_DAYS,
    SEND,
    Upcoming,
    Verdict,
    day_best,
    day_values,
    decide_many,
    is_quiet,
    later_hours,
    marketing_sends,
    marketing_times,
    monthly_cap,
    monthly_slots_left,
    projected_recents,
    slot_moments,
)
from recsys.eligibility import valid_between
from recsys.live_hours import live_sends
from recsys.publication import decode_users
from recsys.response_model import daily_cycle
from recsys.times import iso_utc, zone
from serving.errors import UnknownFeaturesError
from serving.pipeline import Cardholders, LiveModel, Ranked
from serving.responses import require_finite
from serving.scheduler_slots import MIN_DAYS as MIN_SLOT_DAYS
from serving.schemas import RankRequest
from serving.send_at_following import is_later, rechecked, tag_push_id
from serving.state import ServingState, Snapshot

NO_CANDIDATES = {"rule": "no_candidates", "detail": "no eligible content for this cardholder at this time",
                 "eligible_at": None}
NOT_OPTED_IN = {"rule": "opt_out", "detail": "the cardholder's push_opt_in is false in the published data",
                "eligible_at": None}


# The caps look at the best k + CAPS_SPARE eligible candidates, not only k: rules that block single
# items (no repeat, tag or kind limits, a full campaign) would otherwise leave answers short. Each extra
# candidate is one more rule check inside the caps script for every request; a cap that blocks the
# cardholder (daily, monthly, gap, quiet hours) blocks all of them alike, so more would rarely help.
# When more are blocked than that, the answer says so (`caps.short`).
CAPS_SPARE = 3


_FOUR_DAYS = timedelta(days=4)  # from the 28th, always into the next month; built once (about 1 us each)


# Pacing values, beside the top push, the best candidate (by the ranking score) that becomes valid later
# this month, when it ranks at least as high as the top push (`upcoming_candidates`); each one more would
# add an hour grid of response-model rows to every cardholder's query.
UPCOMING = 1


def decide_width(k: int) -> int:
    """How many of the ordered candidates the caps engine looks at."""
    return k + CAPS_SPARE


def check_features(model: LiveModel, features: dict[str, float] | None, where: str) -> None:
    """Refuse feature names the published model lacks (they would be dropped, leaving popularity)."""
    if not features:
        return
    known = set(model.feature_names)
    unknown = [name for name in features if name not in known]
    if unknown:
        hints = [f"{name!r} (did you mean {close[0]!r}?)" if (close := get_close_matches(name, known, 1))
                 else repr(name) for name in unknown[:5]]
        raise UnknownFeaturesError(
            f"{where}: {len(unknown)} feature name(s) unknown to the published model: {', '.join(hints)}; "
            f"use names from its {len(known):,} user features, e.g. {min(known)!r}"
        )


def representations(model: LiveModel, blobs: Sequence[bytes | None], requests: Sequence[RankRequest]
                    ) -> Cardholders:
    """Each request's cardholder as the batch's arrays (`blobs[i]`: request i's published record, None
    when the publication lacks the cardholder)."""
    for index, request in enumerate(requests):
        if request.features:
            check_features(model, request.features,
                           f"requests[{index}].features" if len(requests) > 1 else "features")
    known = [i for i, blob in enumerate(blobs) if blob is not None]
    if len(known) == len(blobs):  # the usual batch: every record decoded into the batch's arrays at once
        return model.known(decode_users(blobs, model.item_dtype, model.feature_dtype))
    published = model.known(decode_users([blobs[i] for i in known], model.item_dtype, model.feature_dtype))
    rows = iter(range(len(known)))
    users = [model.unknown(request.features) if blob is None else published.user(next(rows))
             for blob, request in zip(blobs, requests, strict=True)]
    return model.cardholders(users)


def registry_of(model: LiveModel | None) -> dict[str, str | None]:
    """The registered model name and version the publication came from (null for a path)."""
    name, version = _registry(model)
    return {"registry_model": name, "registry_version": version}


@lru_cache(maxsize=2)  # by live model object (the live one and the one it replaced)
def _registry(model: LiveModel | None) -> tuple[str | None, str | None]:
    manifest = model.manifest if model is not None else {}
    return manifest.get("registry_model"), manifest.get("registry_version")


# slotted (one per cardholder of a batch) and frozen: the requests of one time may share one
@dataclass(frozen=True, slots=True)
class Outlook:
    """The send or hold verdict for a cardholder's top push, and P(open), P(mute) of the candidates now."""

    verdict: Verdict
    p_open: np.ndarray | None  # aligned with ranked.items[:decide_width(k)]; None without a response model
    p_mute: np.ndarray | None
    best_hours: list[int]


def outlooks(snapshot: Snapshot, engine: Any, cardholders: Cardholders, requests: Sequence[RankRequest],
             ranked_all: Sequence[Ranked], moments: Sequence[datetime],
             slot_minutes: Sequence[int] = (), follows: Sequence[bool | None] = (),
             holds: Sequence[bool] = (), records: Sequence[CardholderRecord] | None = None
             ) -> list[Outlook | None]:
    """Outlooks for every request with candidates at its decision time `moments[i]` (see
    `recsys.decision`; `slot_minutes`: the scheduler's times of asking in the policy's default time
    zone; `follows[i]`: whether it sends at `send_at`, None when not known, for request i's answer;
    `holds[i]`: whether a better hour later today is answered `hold`, `held_for_better_hour`);
    one caps read for the batch, none when the batch's caps `records` (request order) are given."""
    model, policy = snapshot.model, snapshot.policy.policy
    rows = [i for i, ranked in enumerate(ranked_all) if len(ranked.items)]
    out: list[Outlook | None] = [None] * len(requests)
    response = model.response
    if response is None or not policy.decision.enabled:
        reason = NO_RESPONSE_MODEL if response is None else DECISIONS_OFF
        shared: dict[datetime, Outlook] = {}  # immutable: the requests of one time share one outlook
        for i in rows:
            now = moments[i]
            look = shared.get(now)
            if look is None:
                look = shared[now] = Outlook(Verdict(SEND, reason, now.astimezone(UTC), float("nan")),
                                             None, None, [])
            out[i] = look
        return out
    if not rows:
        return out
    records = (engine.load_records([requests[i].user_id for i in rows]) if records is None
               else [records[i] for i in rows])
    user_rows = response.user_rows([requests[i].user_id for i in rows])
    quiet = np.array([is_quiet(policy.quiet_hours, datetime(2000, 1, 1, hour)) for hour in range(24)])
    open_hours = np.flatnonzero(~quiet)  # the whole local hours a push may go at
    column = np.cumsum(~quiet) - 1  # an open hour's position among them
    # the recent count now and on each later day of the local month: the push log's pushes the response
    # model keeps and the caps state's after them, older ones leaving the 30-day window day by day
    plans, caps_times, nows_ms = [], [], []
    # the local time, its month and day depend only on the decision time and the zone: a batch asked at
    # one time has a handful
    places: dict[tuple[datetime, str], Place] = {}
    cap = monthly_cap(policy)
    for slot, i in enumerate(rows):
        key = (moments[i], cardholders.timezone[i] or policy.default_timezone)
        place = places.get(key)
        if place is None:
            place = places[key] = local_place(*key)
        now, local, now_ms = moments[i], place.local, place.now_ms
        nows_ms.append(now_ms)
        since = max(now_ms - RECENT_DAYS * 86_400_000, response.history_until * 1000)
        sends = marketing_sends(policy, records[slot], now_ms)
        caps_times.append(marketing_times(sends, since))
        slots_left = monthly_slots_left(cap, sends, place.month_start_ms)
        plans.append((now, local, place.days, slots_left, place.midnight))
    seconds = np.array(nows_ms) // 1000
    at = seconds[:, None] + 86_400 * np.arange(32)[None, :]
    counts = projected_recents(caps_times, seconds, 31) + response.history_counts(user_rows, at)
    pacing = policy.decision.pacing is not None
    upcoming = (upcoming_candidates(model, cardholders, requests, ranked_all, rows, plans) if pacing
                else [[] for _ in rows])
    # one flat query: every candidate at the current hour, then the top candidate at every open hour,
    # then each upcoming candidate at every open hour
    widths = [min(len(ranked_all[i].items), decide_width(requests[i].k)) for i in rows]
    n_hours = len(open_hours)
    blocks = 1 + np.asarray([len(u) for u in upcoming], dtype=np.int64)  # the top and upcoming candidates
    sizes = np.asarray(widths) + n_hours * blocks
    who = np.repeat(np.arange(len(rows)), sizes)
    # each row's candidates at the current hour first, then its hour blocks
    now_rows = np.repeat(np.tile([True, False], len(rows)), np.column_stack([widths, sizes - widths]).ravel())
    item_index = np.empty(len(who), dtype=np.int64)
    item_index[now_rows] = np.concatenate([ranked_all[i].items[:width]
                                           for i, width in zip(rows, widths, strict=True)])
    item_index[~now_rows] = np.repeat(np.concatenate(
        [part for slot, i in enumerate(rows) for part in (ranked_all[i].items[:1], upcoming[slot])]), n_hours)
    hours = np.empty(len(who), dtype=np.int64)
    hours[now_rows] = np.repeat([plan[1].hour for plan in plans], widths)
    hours[~now_rows] = np.tile(open_hours, int(blocks.sum()))
    # the published items' rows (`LiveModel.response_items`) taken per query row: looking up ~40 ids per
    # cardholder by name cost more than the rest of the query's inputs
    item_rows = model.response_items.take(item_index)
    logits = response.logits(user_rows.take(who), item_rows, hours, counts[who, 0])
    logit_open, logit_mute = logits["open"], logits["mute"]
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    grid = (starts + np.asarray(widths))[:, None] + np.arange(n_hours)[None, :]
    # the pushes sent since the fit move each cardholder's daily wave: the top candidate's open logit at
    # each open hour stands for what those pushes were predicted
    logit_at = np.full((len(rows), 24), np.nan)
    logit_at[:, open_hours] = logit_open[grid]
    live_row, live_hour, live_opened = live_sends(records, [cardholders.timezone[i] for i in rows],
                                                  policy.default_timezone, response.history_until * 1000,
                                                  nows_ms)
    wave = response.live_wave(user_rows, live_row, live_hour, live_opened, logit_at)
    if wave.any():
        logit_open = logit_open + (wave[who] * daily_cycle(hours)).sum(axis=1)
    best = response.best_hours(user_rows, k=3, wave=wave)
    p_open = response.calibration["open"].apply(logit_open)
    p_mute = response.calibration["mute"].apply(logit_mute)
    value = p_open - policy.decision.mute_weight * p_mute
    horizon = max(plan[2] for plan in plans)
    next_slots: dict[datetime, tuple[datetime, ...]] = {}  # by decision time: a batch normally has one
    for now, *_ in plans:
        if now not in next_slots:
            next_slots[now] = slot_moments(slot_minutes, now, policy.default_timezone)
    # the open hours a push can go at: every one, or for a scheduler that sends at once on `send`, the
    # local hours of its slots
    reachable = np.ones((len(rows), n_hours), dtype=bool)
    sends_at_once = [bool(slot_minutes) and bool(follows) and follows[i] is False for i in rows]
    for slot, (now, local, *_) in enumerate(plans):
        if sends_at_once[slot]:
            hours = {moment.astimezone(local.tzinfo).hour for moment in next_slots[now]}
            reachable[slot] = np.isin(open_hours, list(hours))
    later_values = np.zeros((len(rows), 0))
    if horizon and pacing:
        later_values = day_values(response, logit_open[grid], logit_mute[grid], counts[:, :horizon + 1],
                                  policy.decision.mute_weight, reachable)
    ahead = upcoming_values(model, response, policy.decision.mute_weight, logit_open, logit_mute, counts,
                            grid + n_hours, upcoming, plans, open_hours, horizon, reachable)
    # as lists: indexing numpy per later hour cost three scalar look-ups each
    hour_values, hour_column = value[grid].tolist(), column.tolist()
    valid_days = (content_days(model, np.array([int(ranked_all[i].items[0]) for i in rows]),
                               np.array([plan[4] for plan in plans]), np.array([plan[2] for plan in plans]))
                  if later_values.shape[1] else np.zeros(len(rows), dtype=np.int64)).tolist()
    later, later_days = [], []
    # the later hours depend only on the local hour's start (its zone and fold too): a batch asked at one
    # time has a handful, one per time zone
    hours_of: dict[tuple, list[datetime]] = {}
    for slot in range(len(rows)):
        local, row = plans[slot][1], hour_values[slot]
        key = (local.date(), local.hour, local.fold, local.tzinfo)
        hours = hours_of.get(key)
        if hours is None:
            hours = hours_of[key] = later_hours(local, policy.quiet_hours)
        later.append([(moment, row[hour_column[moment.hour]]) for moment in hours])
        later_days.append(later_values[slot, :valid_days[slot]])
    verdicts = decide_many(policy.decision, value[starts], later, [plan[1] for plan in plans],
                           [plan[3] for plan in plans], later_days, ahead,
                           [next_slots[plan[0]] for plan in plans],
                           [False if at_once else None for at_once in sends_at_once],
                           [bool(holds) and holds[i] for i in rows])
    share = policy.decision.control_share
    if share > 0.0:  # the control share is sent now whatever the value, as the send-all engine would
        for slot in np.flatnonzero(in_control([requests[i].user_id for i in rows], share)).tolist():
            verdicts[slot] = Verdict(SEND, CONTROL_REASON, plans[slot][0].astimezone(UTC),
                                     float(value[starts[slot]]))
    for slot, i in enumerate(rows):
        start, width = int(starts[slot]), widths[slot]
        out[i] = Outlook(verdicts[slot], p_open[start:start + width], p_mute[start:start + width], best[slot])
    return out


@dataclass(frozen=True)
class Place:
    """A decision time in one time zone: the local time, its month and its day."""

    local: datetime
    now_ms: int
    month_start_ms: int
    days: int  # later days of the local month
    midnight: float  # epoch second of today's local midnight


def local_place(now: datetime, timezone: str) -> Place:
    """`now` in time zone `timezone`: its local time, the start of its local month, the later days of that
    month and today's local midnight."""
    local = now.astimezone(zone(timezone))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month_start.replace(day=28) + _FOUR_DAYS).replace(day=1)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return Place(local, to_ms(now), to_ms(month_start), max(0, (next_month.date() - local.date()).days - 1),
                 midnight.timestamp())


def content_days(model: LiveModel, items: np.ndarray, midnight: np.ndarray, days: np.ndarray) -> np.ndarray:
    """int [n]: of each row's `days` later days of the month, how many `items[row]` is still valid on
    (all for no end, NaN; none for transactional content), from its local `midnight` today."""
    ends = model.valid_to[items]
    with np.errstate(invalid="ignore"):
        until = np.clip((ends - midnight) // 86_400, 0, days)
    out = np.where(np.isnan(ends), days, until)
    return np.where(model.transactional[items], 0, out).astype(np.int64)


def upcoming_candidates(model: LiveModel, cardholders: Cardholders, requests: Sequence[RankRequest],
                        ranked_all: Sequence[Ranked], rows: Sequence[int], plans: Sequence[tuple]
                        ) -> list[np.ndarray]:
    """Per row (request `rows[slot]`, with candidates): of the best `UPCOMING` items (by the ranking score)
    the cardholder may get that become valid after now and before the local month ends, those ranked at
    least as high as its top push now (`ranked_all[i].scores[0]`); none for requests naming their
    candidates.

    Content ranked below what would be pushed now is not held for: valued on its own days, the best of
    those valid later held slots for items the ranking then never put first (README, "More than one
    month")."""
    out: list[np.ndarray] = [np.zeros(0, np.int64) for _ in rows]
    by_time: dict[datetime, list[int]] = {}
    for slot, i in enumerate(rows):
        if requests[i].candidates is None and plans[slot][2]:
            by_time.setdefault(plans[slot][0], []).append(slot)
    for now, slots in by_time.items():
        month_end = now.timestamp() + 86_400 * (max(plans[slot][2] for slot in slots) + 1)
        with np.errstate(invalid="ignore"):
            later = (model.valid_from > now.timestamp()) & (model.valid_from < month_end)
        if not later.any():
            continue
        ranked = model.rank_block(cardholders.take(np.asarray([rows[slot] for slot in slots])), now, UPCOMING,
                                  later)
        for slot, found in zip(slots, ranked, strict=True):
            out[slot] = found.items[found.scores >= ranked_all[rows[slot]].scores[0]]
    return out


def upcoming_values(model: LiveModel, response: Any, mute_weight: float, logit_open: np.ndarray,
                    logit_mute: np.ndarray, counts: np.ndarray, first: np.ndarray,
                    upcoming: Sequence[np.ndarray], plans: Sequence[tuple], open_hours: np.ndarray,
                    horizon: int, reachable: np.ndarray) -> list[list[Upcoming]]:
    """Per row: each upcoming candidate's best value on every later day of the month from its first valid
    hour on, at the open hours `reachable[slot]` (`recsys.decision.day_best`); `first[slot] + n_hours * j`
    are candidate j's query rows."""
    out: list[list[Upcoming]] = [[] for _ in plans]
    lengths = np.array([len(items) for items in upcoming], dtype=np.int64)
    if not lengths.sum() or not horizon:
        return out
    # one row per (cardholder, upcoming candidate j)
    slots = np.repeat(np.arange(len(upcoming)), lengths)
    j = np.arange(len(slots)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    n_hours = len(open_hours)
    columns = first[slots] + n_hours * j[:, None]
    items = np.concatenate(upcoming).astype(np.int64)
    midnight = np.array([plan[4] for plan in plans])[slots]
    # epoch second of each later day (1..horizon) at each open hour
    moment = (midnight[:, None, None] + 86_400 * np.arange(1, horizon + 1)[None, :, None]
              + 3_600 * open_hours[None, None, :])
    days_left = np.array([plans[slot][2] for slot in slots])
    valid = valid_between(model.valid_from[items][:, None, None], model.valid_to[items][:, None, None],
                          moment)
    usable = (valid & (np.arange(1, horizon + 1)[None, :, None] <= days_left[:, None, None])
              & reachable[slots][:, None, :])
    values, column = day_best(response, logit_open[columns], logit_mute[columns],
                              counts[slots, :horizon + 1], mute_weight, usable)
    seconds = np.take_along_axis(moment, np.maximum(column, 0)[:, :, None], axis=2)[:, :, 0].astype(np.int64)
    for row, (slot, item) in enumerate(zip(slots.tolist(), items.tolist(), strict=True)):
        out[slot].append(Upcoming(str(model.item_ids[item]), values[row], seconds[row]))
    return out


def cap_requests(model: LiveModel, cardholders: Cardholders, requests: Sequence[RankRequest],
                 ranked_all: Sequence[Ranked], looks: Sequence[Outlook | None], moments: Sequence[datetime]
                 ) -> tuple[list[CapRequest], list[int]]:
    """The caps request of every request with candidates (each its best `decide_width(k)` in order,
    reserving only when asked, with a candidate, and the outlook says send; a reservation for a later
    `send_at` under a push id that carries it, `tag_push_id`), and their request indices."""
    out, positions = [], []
    candidates_of: dict[str | None, list[Candidate]] = {}  # a batch names a campaign or two
    widths = {k: decide_width(k) for k in {request.k for request in requests}}
    rows = zip(cardholders.timezone, requests, ranked_all, looks, strict=True)
    for index, (timezone, request, ranked, outlook) in enumerate(rows):
        if not len(ranked.items):
            continue
        candidates = candidates_of.get(request.campaign)
        if candidates is None:
            candidates = candidates_of[request.campaign] = model.cap_candidates(request.campaign)
        chosen_items = ranked.lists()[0][:widths[request.k]]
        chosen = (itemgetter(*chosen_items)(candidates) if len(chosen_items) > 1
                  else tuple([candidates[i] for i in chosen_items]))
        reserve = request.reserve and bool(chosen) and (outlook is None or outlook.verdict.decision == SEND)
        push_id = None
        if reserve and outlook is not None and is_later(moments[index], outlook.verdict.send_at):
            push_id = tag_push_id(new_push_id(), outlook.verdict.send_at)
        out.append(CapRequest(request.user_id, chosen, timezone, reserve, push_id))
        positions.append(index)
    return out, positions


# a batch's answers share a handful of times (now, a reservation's expiry, a cap's next slot)
ISO_CACHE_SIZE = 4096


@lru_cache(maxsize=ISO_CACHE_SIZE)
def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def chosen_positions(request: RankRequest, decision: UserDecision | None) -> list[int]:
    """Positions (in the caps' candidate order) of the items answered: the first `k` allowed, the
    reserved one first."""
    if decision is None:
        return []
    chosen = [position for position, candidate in enumerate(decision.decisions) if candidate.allowed]
    chosen = chosen[:request.k]
    reservation = decision.reservation
    if (reservation is not None and chosen
            and decision.decisions[chosen[0]].content_id != reservation.content_id):
        # The reserved content is what the scheduler sends: it always comes first.
        positions = (p for p, d in enumerate(decision.decisions) if d.content_id == reservation.content_id)
        reserved = next(positions, None)
        if reserved is not None and reserved != chosen[0]:
            chosen = [reserved, *(p for p in chosen if p != reserved)][:request.k]
    return chosen


def answers(model: LiveModel, snapshot: Snapshot, cardholders: Cardholders,
            requests: Sequence[RankRequest], ranked_all: Sequence[Ranked],
            decisions: Sequence[UserDecision | None], moments: Sequence[datetime],
            looks: Sequence[Outlook | None]) -> list[dict[str, Any]]:
    """The response bodies of a batch, in request order (times as ISO 8601 strings, as the JSON has them).

    One pass over the batch: what every answer shares (model, registry, policy version) is looked up
    once, and each cardholder's ranked items and scores become lists once for the positions chosen."""
    chosen_all = [chosen_positions(request, decision)
                  for request, decision in zip(requests, decisions, strict=True)]
    ranked_lists = [ranked.lists() if chosen else ([], [])
                    for ranked, chosen in zip(ranked_all, chosen_all, strict=True)]
    picked_all = [[items[p] for p in chosen] for (items, _), chosen in zip(ranked_lists, chosen_all,
                                                                            strict=True)]
    reasons_all = model.reasons_many(cardholders, picked_all)
    version, policy_version = model.version, snapshot.policy.policy.version
    registry_model, registry_version = _registry(model)
    ids, titles, kinds = model.item_ids, model.titles, model.kinds
    bodies = []
    rows = zip(cardholders.opt_in.tolist(), cardholders.fallback, requests, ranked_all, decisions, looks,
               chosen_all, ranked_lists, reasons_all, picked_all, moments, strict=True)
    for (opt_in, fallback, request, ranked, decision, outlook, chosen, (_, scores), reasons, picked,
         now) in rows:
        body_items: list[dict[str, Any]] = []
        blocks: list[dict[str, Any]] = []
        if chosen:
            body_items = [
                {"content_id": ids[item], "title": titles[item], "kind": kinds[item], "score": scores[p],
                 "reason": reason}
                for item, p, reason in zip(picked, chosen, reasons, strict=True)
            ]
            if not ranked.finite:  # rows of a ranked block were tested together (`LiveModel._rank_rows`)
                chosen_scores = [scores[p] for p in chosen]
                if not math.isfinite(sum(chosen_scores)):  # the message is written only when needed
                    require_finite(chosen_scores, f"scores for {request.user_id!r}")
            if outlook is not None and outlook.p_open is not None:
                for body_item, position in zip(body_items, chosen, strict=True):
                    body_item["p_open"] = float(outlook.p_open[position])
                    body_item["p_mute"] = float(outlook.p_mute[position])
                    require_finite([body_item["p_open"], body_item["p_mute"]],
                                   f"P(open), P(mute) of {body_item['content_id']!r} for {request.user_id!r}")
            caps_next = _iso(now)
            if outlook is None:
                verdict = (SEND, NO_RESPONSE_MODEL, caps_next)
            else:
                verdict = (outlook.verdict.decision, outlook.verdict.reason, _iso(outlook.verdict.send_at))
        else:
            if decision is not None:
                if decision.decisions:
                    blocks = [{"rule": b.rule, "detail": b.detail, "eligible_at": _iso(b.eligible_at)}
                              for b in decision.decisions[0].blocks]
            elif not opt_in:
                blocks = [NOT_OPTED_IN]
            else:
                blocks = [NO_CANDIDATES]
            caps_next = _iso(decision.eligible_at) if decision is not None else None
            verdict = (HOLD, "caps: " + (", ".join(b["rule"] for b in blocks) or "blocked"), caps_next)
        reservation = decision.reservation if decision is not None else None
        bodies.append({
            "user_id": request.user_id,
            "items": body_items,
            "model_version": version,
            "registry_model": registry_model,
            "registry_version": registry_version,
            "fallback": fallback is not None,
            "fallback_source": fallback,
            "caps": {
                "allowed": bool(chosen),
                "blocks": blocks,
                "next_eligible_at": caps_next,
                "policy_version": decision.policy_version if decision is not None else policy_version,
                # fewer than k although eligible candidates were left beyond those the caps looked at
                "short": len(chosen) < request.k and len(ranked.items) > decide_width(request.k),
            },
            "push_id": reservation.push_id if reservation is not None else None,
            "reservation_expires_at": _iso(reservation.expires_at) if reservation is not None else None,
            "skipped": [{"content_id": c, "reason": r} for c, r in ranked.skipped] if ranked.skipped else [],
            "decision": verdict[0],
            "reason": verdict[1],
            "send_at": verdict[2],
            "best_hours": [] if outlook is None else outlook.best_hours,
        })
    return bodies


def scheduler_slots(state: ServingState, snapshot: Snapshot, moments: Sequence[datetime],
                    record: bool, min_days: int = MIN_SLOT_DAYS) -> tuple[int, ...]:
    """The scheduler's times of asking (minutes of the day in the policy's default time zone): the
    policy's, else learned from at least `min_days` earlier days with batch calls; `record` adds these
    calls' minutes."""
    policy = snapshot.policy.policy
    fixed = policy.decision.slot_minutes
    deciding = snapshot.model.response is not None and policy.decision.enabled
    if not record and (fixed is not None or not deciding):
        return fixed or ()
    learned = state.scheduler_slots.slots(sorted(set(moments)), policy.default_timezone, record, min_days)
    return fixed if fixed is not None else learned


def scheduler_habit(state: ServingState, snapshot: Snapshot, moments: Sequence[datetime]) -> bool | None:
    """Whether the scheduler sends at `send_at`: the policy's, else learned from its earlier days' `sent`
    events (`serving.send_at_following`); None when not known, or when it would change nothing (no
    decisions)."""
    policy = snapshot.policy.policy
    if snapshot.model.response is None or not policy.decision.enabled:
        return None
    fixed = policy.decision.scheduler_follows_send_at
    if fixed is not None:
        return fixed
    return state.send_at_following.follows(min(moments), policy.default_timezone)


def scheduler_follows(snapshot: Snapshot, requests: Sequence[RankRequest], moments: Sequence[datetime],
                      habit: bool | None) -> list[bool | None]:
    """For each request's answer, the scheduler's `habit` (`scheduler_habit`), but None (not known) for
    the cardholders of the day's re-check (`rechecked`) of a scheduler learned to ignore `send_at`."""
    policy = snapshot.policy.policy
    if habit is not False or policy.decision.scheduler_follows_send_at is not None:
        return [habit] * len(requests)
    return [None if again else False for again in rechecked_rows(snapshot, requests, moments)]


def rechecked_rows(snapshot: Snapshot, requests: Sequence[RankRequest], moments: Sequence[datetime]
                   ) -> list[bool]:
    """For each request, whether its cardholder is in the re-checked share of its local day
    (`rechecked`, in the policy's default time zone)."""
    tz = zone(snapshot.policy.policy.default_timezone)
    return [rechecked(request.user_id, moment.astimezone(tz).date())
            for request, moment in zip(requests, moments, strict=True)]


def held_for_better_hour(snapshot: Snapshot, requests: Sequence[RankRequest], moments: Sequence[datetime],
                         habit: bool | None, slot_minutes: Sequence[int]) -> list[bool]:
    """For each request, whether a better hour later today is answered `hold` (ask again then) instead
    of `send` at it: while neither the scheduler's habit nor its slots are known (its first day), a
    scheduler that sends at once would push now at the worse hour. The day's re-checked share
    (`rechecked`) is still answered `send` with the later `send_at`: their `sent` events teach the habit
    (one in 16 taught it on the first day in the month measured; README, "The first day")."""
    policy = snapshot.policy.policy
    if habit is not None or slot_minutes or snapshot.model.response is None or not policy.decision.enabled:
        return [False] * len(requests)
    return [not again for again in rechecked_rows(snapshot, requests, moments)]


def pushed_since(model: LiveModel, policy: Policy, requests: Sequence[RankRequest],
                 records: Sequence[CardholderRecord], moments: Sequence[datetime]) -> list[list[int]]:
    """Per request, the published items the no-repeat rule blocks at its time by the caps state
    (`repeat_blocked`); none for a request naming its candidates (the caps answer for those)."""
    position = model.item_position
    millis: dict[datetime, int] = {}  # by decision time: a batch normally has one
    out: list[list[int]] = []
    for request, record, now in zip(requests, records, moments, strict=True):
        if request.candidates is not None or not (record.sent_contents or record.pushes):
            out.append([])
            continue
        now_ms = millis.get(now)
        if now_ms is None:
            now_ms = millis[now] = to_ms(now)
        blocked = repeat_blocked(policy, record, now_ms)
        out.append([item for item in map(position.get, blocked) if item is not None] if blocked else [])
    return out


def rank_many(state: ServingState, requests: Sequence[RankRequest], default_now: datetime | None = None,
              record_slots: bool = False) -> tuple[Snapshot, list[dict[str, Any]]]:
    """Rank a batch (`record_slots`: a scheduler's batch call, whose time of day teaches the slots)."""
    snapshot = state.snapshot()
    model = snapshot.model
    clock = default_now or state.now()
    # Each request's decision time in UTC: requests parsed one by one carry a time zone object each, and
    # comparing or hashing times of different zone objects costs a zone lookup (2 us) every time.
    moments = [clock if request.now is None else request.now.astimezone(UTC) for request in requests]
    by_time: dict[datetime, list[int]] = {}
    for index, moment in enumerate(moments):
        by_time.setdefault(moment, []).append(index)
    # A batch's requests normally share one time: each time given is checked once, at the first request
    # giving it, in request order (an error names the first request outside the window).
    givers = [next((i for i in indices if requests[i].now is not None), None) for indices in by_time.values()]
    for index in sorted(i for i in givers if i is not None):
        state.check_now(requests[index].now, f"requests[{index}].now" if len(requests) > 1 else "now")
    blobs = state.user_records(model.version, [request.user_id for request in requests])
    cardholders = representations(model, blobs, requests)
    records = None
    policy = snapshot.policy.policy
    if policy.no_repeat is not None and any(request.candidates is None for request in requests):
        # content pushed since the publication is out of the ranking as content seen before it is: else a
        # cardholder's first k + CAPS_SPARE candidates, once each pushed, leave nothing to answer (the
        # caps look no further) and the decision values a push the caps refuse
        records = state.engine.load_records([request.user_id for request in requests])
        cardholders = cardholders.also_seen(pushed_since(model, policy, requests, records, moments))
    ranked_all: list[Ranked | None] = [None] * len(requests)
    for now, indices in by_time.items():
        valid = model.valid_at(now)
        default = [i for i in indices if requests[i].candidates is None]
        if default:
            # one more than the caps look at: whether eligible candidates were left unchecked
            width = decide_width(max({requests[i].k for i in default})) + 1
            if len(default) == len(requests):  # the usual batch: every request, in order
                ranked_all = model.rank_block(cardholders, now, width, valid)
            else:
                block = cardholders.take(np.asarray(default, dtype=np.int64))
                for i, ranked in zip(default, model.rank_block(block, now, width, valid), strict=True):
                    ranked_all[i] = ranked
        for i in indices:
            if requests[i].candidates is not None:
                ranked_all[i] = model.rank(cardholders.user(i), now, requests[i].candidates, valid)
    slot_minutes = scheduler_slots(state, snapshot, list(by_time), record_slots)
    habit = scheduler_habit(state, snapshot, moments)
    follows = scheduler_follows(snapshot, requests, moments, habit)
    if not slot_minutes and False in follows:
        # A scheduler known to send at once, with fewer than two days of calls: its answers for a later
        # hour would go out now, so its one earlier day's times of asking are the better guess (the
        # second day of a deployment; see "Schedulers of other shapes" in the README).
        slot_minutes = scheduler_slots(state, snapshot, list(by_time), False, min_days=1)
    holds = held_for_better_hour(snapshot, requests, moments, habit, slot_minutes)
    looks = outlooks(snapshot, state.engine, cardholders, requests, ranked_all, moments, slot_minutes,
                     follows, holds, records)
    cap_batch, positions = cap_requests(model, cardholders, requests, ranked_all, looks, moments)
    decisions: list[UserDecision | None] = [None] * len(requests)
    if cap_batch:
        # One caps call per distinct decision time, in the order of their first requests with candidates
        # (a batch normally shares one time).
        by_cap_time: dict[datetime, list[int]] = {}
        if len(by_time) == 1:
            by_cap_time[moments[0]] = list(range(len(cap_batch)))
        else:
            for slot, index in enumerate(positions):
                by_cap_time.setdefault(moments[index], []).append(slot)
        for now, slots in by_cap_time.items():
            results = state.engine.decide_batch([cap_batch[s] for s in slots], now=now)
            for slot, result in zip(slots, results, strict=True):
                decisions[positions[slot]] = result
    bodies = answers(model, snapshot, cardholders, requests, ranked_all, decisions, moments, looks)
    blocked = [caps["blocks"] for caps in map(itemgetter("caps"), bodies) if not caps["allowed"]]
    rules: Counter[str] = Counter()
    if len(blocked) < len(bodies):
        rules["allowed"] = len(bodies) - len(blocked)
    rules.update(block["rule"] for blocks in blocked for block in blocks)
    fallbacks = Counter(cardholders.fallback)
    del fallbacks[None]
    for rule, count in rules.items():
        state.metrics.caps_decisions.labels(rule).inc(count)
    for source, count in fallbacks.items():
        state.metrics.fallbacks.labels(source).inc(count)
    return snapshot, bodies
