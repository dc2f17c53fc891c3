"""A cardholder hash as the Redis engine stores it, read back as the reference's `CardholderRecord`."""

from __future__ import annotations

from recsys.caps import rules
from recsys.caps.redis_engine import parse_record


def test_a_missing_hash_is_an_empty_record() -> None:
    assert parse_record({}) == rules.CardholderRecord()


def test_every_field_of_a_hash_is_read() -> None:
    reserved = ["p1", "r", "1000", "2000", "0", "art-1", "article", "|travel|dining|", ""]
    confirmed = ["p2", "c", "500", "900", "1", "bill", "reminder", "", "spring"]
    pushes = "\x1e" + "\x1f".join(reserved) + "\x1e" + "\x1f".join(confirmed)
    fields = {"o": "11", "m": "12", "u": "3", "l": "500", "c:art-9": "400", "c:promo-7": "450",
              "S": "\x1ep0\x1f300\x1f1\x1ep2\x1f500\x1f0", "P": pushes}
    assert parse_record(fields) == rules.CardholderRecord(
        pushes={
            "p1": rules.PushRecord("p1", rules.RESERVED, 1000, 2000, "art-1", "article", ("travel", "dining"),
                                   False, None),
            "p2": rules.PushRecord("p2", rules.CONFIRMED, 500, 900, "bill", "reminder", (), True, "spring"),
        },
        sent_contents={"art-9": 400, "promo-7": 450},
        opted_out=11, muted=12, unopened=3, last_sent=500,
        outcomes=[("p0", 300, True), ("p2", 500, False)],
    )


def test_a_hash_of_pushes_only_keeps_the_defaults() -> None:
    record = parse_record({"P": "\x1e" + "\x1f".join(["p1", "x", "1000", "2000", "0", "a", "k", "", ""])})
    assert (record.opted_out, record.muted, record.unopened, record.last_sent) == (None, None, 0, None)
    assert not record.sent_contents and not record.outcomes
    assert record.pushes["p1"].status == rules.RELEASED
