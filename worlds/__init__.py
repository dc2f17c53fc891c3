"""A synthetic credit-card WeChat audience with a known answer.

`recsys synth` (`generator.generate_world`) writes a contract-valid data directory (cardholders, card
spend, menu clicks, article reads, content, push log) and, outside it, the hidden truth
(`truth.WorldTruth`): each cardholder's true probability of opening each item and the response model
(`response.ResponseModel`) that also answers mute probabilities under push fatigue.

The generative model in one paragraph: every cardholder has a hidden taste, a log-interest over
topics (spend categories such as dining or airlines, and finance topics such as instalments or
points), drawn around a persona that depends on age and card tier (`population`). Spend categories
are drawn from that taste (`spend`), menu clicks from the card cycle, utilisation, points and the
finance part of the taste (`menu`), article reads from taste under popularity-biased exposure for
the ~60% who read at all (`reads`), and push opens and mutes from the response model, whose open
logit is engagement + item appeal + taste . item topics (`pushes`, `response`). So behaviour a bank
can observe carries the signal a model needs to personalise, also for cardholders who never read.
`scenario` changes that structure (taste on merchants or needs instead of categories, the share of
readers, tag vocabularies, time-of-day preference, noise) so models can be checked on worlds unlike
the default one.
Modules: `catalog` (vocabularies, MCCs), `clock` (days and card cycles), `content`,
`content_variants` (merchant topics, other tag vocabularies), `tables` (Arrow schemas and writers),
`pseudonyms` (ids), `sampling`.
"""

from worlds.generator import (
    WorldConfig,
    WorldConfigError,
    WorldOutputError,
    WorldSummary,
    generate_world,
)
from worlds.response import ResponseModel, ResponseParams
from worlds.truth import TruthFileError, WorldTruth

__all__ = [
    "ResponseModel",
    "ResponseParams",
    "TruthFileError",
    "WorldConfig",
    "WorldConfigError",
    "WorldOutputError",
    "WorldSummary",
    "WorldTruth",
    "generate_world",
]
