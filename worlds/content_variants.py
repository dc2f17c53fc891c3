"""Scenario variants of the catalogue: topics on individual merchants, and other tag vocabularies.

`to_merchants` moves every item's spend topics onto one MCC of each category (chosen per item), so
an item is about, say, ``m5814`` (fast food) rather than dining as a whole; its tags say so. `retag`
rewrites topic tags: ``synonyms`` writes each topic as one of three opaque codes (``k042``) so no tag
names its topic and one topic has several tags; ``noisy`` keeps only some topic tags (the first one
with probability 0.75, the others 0.5) and adds an unrelated topic tag to 40% of items. Context tags
(``weekend``, ``guide``...) are left alone.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from recsys.cells import SEPARATOR, split_list
from worlds import catalog
from worlds.content import Content
from worlds.scenario import SYNONYMS_PER_TOPIC, TopicSpace

NOISY_KEEP_FIRST = 0.75
NOISY_KEEP_OTHER = 0.5
NOISY_WRONG = 0.4


def to_merchants(rng: np.random.Generator, content: Content, space: TopicSpace) -> Content:
    """The catalogue with topics (and topic tags) on the merchant topics of ``space``."""
    n_items = len(content)
    fine = np.zeros((n_items, len(space.names)))
    fine[:, space.n_spend :] = content.topics[:, catalog.N_SPEND :]
    chosen: dict[int, np.ndarray] = {}
    for category in range(catalog.N_SPEND):
        options = space.merchant_topics_of(category)
        chosen[category] = options[rng.integers(0, len(options), n_items)]
        fine[np.arange(n_items), chosen[category]] += content.topics[:, category]
    tags = []
    for row, parts in enumerate(split_list(pd.Series(content.tags))):
        renamed = []
        for tag in parts:
            topic = catalog.TOPIC_INDEX.get(tag, -1)
            renamed.append(space.names[chosen[topic][row]] if 0 <= topic < catalog.N_SPEND else tag)
        tags.append(SEPARATOR.join(renamed))
    return replace(content, topics=fine, tags=np.array(tags, dtype=object))


def retag(rng: np.random.Generator, content: Content, space: TopicSpace, vocabulary: str) -> Content:
    """The catalogue with its topic tags rewritten in ``vocabulary`` (``synonyms`` or ``noisy``)."""
    if vocabulary == "topics":
        return content
    n_topics = len(space.names)
    if vocabulary == "synonyms":
        codes = rng.permutation(n_topics * SYNONYMS_PER_TOPIC).reshape(n_topics, SYNONYMS_PER_TOPIC)
        width = len(str(n_topics * SYNONYMS_PER_TOPIC - 1))
    elif vocabulary != "noisy":
        raise ValueError(f"unknown tag vocabulary {vocabulary!r}")
    tags = []
    for text, parts in zip(content.tags, split_list(pd.Series(content.tags)), strict=True):
        out = []
        topic_seen = 0
        for tag in parts:
            topic = space.index.get(tag)
            if topic is None:
                out.append(tag)
            elif vocabulary == "synonyms":
                out.append(f"k{codes[topic, rng.integers(SYNONYMS_PER_TOPIC)]:0{width}d}")
            else:
                keep = NOISY_KEEP_FIRST if topic_seen == 0 else NOISY_KEEP_OTHER
                topic_seen += 1
                if rng.random() < keep:
                    out.append(tag)
        if vocabulary == "noisy" and text and rng.random() < NOISY_WRONG:
            wrong = space.names[rng.integers(n_topics)]
            if wrong not in out:
                out.append(wrong)
        tags.append(SEPARATOR.join(out))
    return replace(content, tags=np.array(tags, dtype=object))
