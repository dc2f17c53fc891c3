"""Plain words for cap rule ids (`limit:monthly`, `min_gap`, ...), as a product owner reads them."""

from __future__ import annotations

from collections.abc import Iterable

from recsys.caps.policy import Policy

RULE_WORDS = {
    "opt_out": "Opted out of marketing pushes",
    "muted": "Muted or unfollowed the account",
    "quiet_hours": "Quiet hours",
    "min_gap": "Too soon after the last push",
    "fatigue": "Paused after pushes left unopened",
    "no_repeat": "Already received that content",
    "campaign_throttle": "Campaign sending rate reached",
    # the simulator's name for a request no single rule blocked alone
    "combined": "Several rules together",
}


def rule_words(rule: str, policy: Policy | None = None) -> str:
    """`limit:monthly` -> `Monthly limit (pushes per calendar month)`; other ids from RULE_WORDS.

    No numbers: the same words label a rule in the live policy and in a draft that changed its maximum.
    """
    if rule.startswith("limit:"):
        name = rule.split(":", 1)[1]
        limit = next((item for item in policy.limits if item.name == name), None) if policy else None
        label = f"{name.replace('_', ' ').capitalize()} limit"
        return f"{label} ({limit.describe()})" if limit else label
    return RULE_WORDS.get(rule, rule.replace("_", " ").capitalize())


def rule_words_for(rules: Iterable[str], policies: Iterable[Policy]) -> dict[str, str]:
    """Words for every rule id, each read from the first policy that defines it (a limit only a draft has)."""
    chosen = list(policies)
    words = {}
    for rule in rules:
        owner = next((policy for policy in chosen if _defines(policy, rule)), chosen[0] if chosen else None)
        words[rule] = rule_words(rule, owner)
    return words


def _defines(policy: Policy, rule: str) -> bool:
    if rule.startswith("limit:"):
        return any(limit.name == rule.split(":", 1)[1] for limit in policy.limits)
    return True
