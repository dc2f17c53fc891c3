"""Taste quality across differently structured worlds: top-1 gap closed, engine vs the plain hybrid.

For each world (synthetic worlds written by `recsys synth` with the scenario options given, plus the
shared independent world when ../shared/worlds/independent exists) it fits, at the world's as-of time,
the engine (the training configuration's model and features, its epochs, item appeal and wide weights
chosen on a validation window as `recsys train` does), the plain hybrid (untuned LightFM on
raw features, the gate's yardstick) and the previous release (MCC categories only, no raw MCCs, no
tags of opened pushes, no menu-click shares, no history dropout, no item appeal, no wide part,
10 epochs), ranks every cardholder's top 5 eligible items and prints the share of the
popularity-to-oracle gap in true top-1 open probability each closes, overall and for cardholders who
never read. Synthetic worlds are scored with
`training.truth.score_recommendations`, the shared world with its own `score.py`.

    .venv/bin/python benchmarks/quality.py                                   # the default worlds
    .venv/bin/python benchmarks/quality.py --users 5000 \\
        --world "merchants=--scenario merchants" --world "noisy=--taste needs --noise 1.5 --tags noisy"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "worlds"
DEFAULT_WORLDS = (
    "categories=--scenario categories",
    "merchants=--scenario merchants",
    "needs=--scenario needs",
    "sparse-readers=--scenario sparse-readers",
    "targeted=--campaign-targeting 0.8",
)
PREVIOUS_FEATURES = {"spend_mcc_weight": 0.0, "spend_visits_weight": 0.0, "open_topic_weight": 0.0,
                     "item_title_weight": 0.0, "menu_share_weight": 0.0}
PREVIOUS_MODEL = {"history_dropout": 0.0, "item_appeal_weight": 0.0, "wide_weight": 0.0, "epochs": 10}


def synthesise(out: Path, users: int, seed: int, options: str) -> None:
    recsys = Path(sys.executable).with_name("recsys")
    command = [str(recsys), "synth", "--out", str(out), "--users", str(users), "--seed", str(seed),
               *shlex.split(options)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"recsys synth {options} failed:\n{result.stdout}\n{result.stderr}")


def eligibility_at(data, dataset, as_of):
    """What every cardholder of `data` may be offered at `as_of`, as `recsys recommend` ranks."""
    from features.bundle_inputs import card_tiers_of, item_metadata, seen_pairs
    from recsys.bundle import build_eligibility

    return build_eligibility(item_metadata(dataset.content, data.items), data.items, as_of,
                             card_tiers_of(dataset, data.users.ids),
                             seen_pairs(dataset, as_of, data.users.ids, data.items))


def top5(model, data, dataset, as_of):
    """Every cardholder's top 5 eligible items as a `recsys recommend` frame."""
    import numpy as np

    from recsys.ranking import top_k

    factors = model.user_factors(np.arange(data.n_users), data.user_features)
    indices, _ = top_k(factors, model.item_factors(), 5, eligibility_at(data, dataset, as_of))
    return recommendation_frame(indices, data)


def recommendation_frame(indices, data):
    """Ranked item indices [cardholders, k] (-1 = none) as a `recsys recommend` frame."""
    import numpy as np
    import pandas as pd

    rows, ranks = np.nonzero(indices >= 0)
    return pd.DataFrame({"user_id": np.asarray(data.users.ids)[rows], "rank": ranks + 1,
                         "content_id": np.asarray(data.items.ids)[indices[rows, ranks]]})


def score(world: Path, recs, dataset, truth_path: Path | None) -> tuple[float, float]:
    """(gap closed overall, for non-readers) of a recommendation frame."""
    if truth_path is not None:
        from training.truth import load_truth, score_recommendations

        scored = score_recommendations(recs, dataset, load_truth(truth_path))
        return scored.overall.gap_closed, scored.non_readers.gap_closed
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "recs.parquet"
        recs.to_parquet(path, index=False)
        result = subprocess.run([sys.executable, str(SHARED / "score.py"), str(world), str(path)],
                                capture_output=True, text=True, check=True)
    out = json.loads(result.stdout)
    return out["gap_closed_top1"], out["gap_closed_top1_cold"]


def measure(name: str, world: Path, as_of, truth_path: Path | None, config) -> list[dict]:
    import pandas as pd

    from features.config import FeatureConfig
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from recsys.models.plain_hybrid import PlainHybrid
    from training.config import ModelSpec

    dataset = load_dataset(world)
    # what `recsys train` does: epochs, item appeal and wide weights chosen on a validation window
    from training.selection import choose_on_validation

    selection = choose_on_validation(dataset, as_of - pd.Timedelta(days=config.holdout_days), config,
                                     echo=lambda line: print(f"  {name:<16} {line.strip()}", flush=True))
    config = selection.apply(config)
    previous = FeatureConfig.from_dict({**config.features.to_dict(), **PREVIOUS_FEATURES})
    previous_model = ModelSpec(config.model.kind, {**config.model.params, **PREVIOUS_MODEL})
    rows = []
    for label, features, make in (
        ("engine", config.features, config.model.build),
        ("plain hybrid", config.features, lambda: PlainHybrid(random_state=config.seed)),
        ("previous release", previous, previous_model.build),
    ):
        start = time.perf_counter()
        data, _ = build_training_matrices(dataset, as_of, features)
        model = make().fit(data)
        overall, cold = score(world, top5(model, data, dataset, as_of), dataset, truth_path)
        rows.append({"world": name, "model": label, "gap_closed": overall, "gap_closed_non_readers": cold,
                     "seconds": time.perf_counter() - start, "chosen": selection.summary()})
        print(f"  {name:<16} {label:<18} {overall:6.3f} {cold:8.3f} {rows[-1]['seconds']:7.1f}", flush=True)
    return rows


def world_arguments(parser: argparse.ArgumentParser, users: int) -> None:
    """The options that say which worlds a taste benchmark measures."""
    parser.add_argument("--world", action="append", metavar="NAME=SYNTH OPTIONS",
                        help="a synthetic world: its name and `recsys synth` options (repeatable)")
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--config", type=Path, default=None, help="training configuration (YAML)")
    parser.add_argument("--no-shared", action="store_true", help="leave out ../shared/worlds/independent")


def worlds(args: argparse.Namespace, scratch: Path) -> Iterator[tuple[str, Path, object, Path | None]]:
    """(name, data directory, as-of time, truth path) of each world `world_arguments` chose: the
    synthetic ones generated into `scratch` in turn, then the shared independent one when present (its
    truth is read by `score.py`, so no path)."""
    from features.loader import load_dataset
    from features.timecut import parse_as_of
    from training.truth import load_truth

    for spec in args.world or DEFAULT_WORLDS:
        name, _, options = spec.partition("=")
        out = scratch / name
        synthesise(out, args.users, args.seed, options)
        truth_path = out.with_name(f"{out.name}.truth.npz")
        yield name, out, load_truth(truth_path).as_of, truth_path
    independent = SHARED / "independent"
    if not args.no_shared and independent.is_dir():
        meta = json.loads((SHARED / "independent.meta.json").read_text())
        yield "shared independent", independent, parse_as_of(meta["as_of"], load_dataset(independent)), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=10_000)
    parser.add_argument("--num-threads", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd

    from training.config import ModelSpec, load_config

    config = load_config(args.config)
    config = replace(config, model=ModelSpec(config.model.kind,
                                             {**config.model.params, "num_threads": args.num_threads}))
    print(f"{'world':<18} {'model':<18} {'gap':>6} {'no reads':>8} {'seconds':>7}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qianmian-quality-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            rows += measure(name, world, as_of, truth_path, config)
    table = pd.DataFrame(rows).pivot(index="world", columns="model",
                                     values=["gap_closed", "gap_closed_non_readers"])
    print("\ntop-1 gap closed (overall | non-readers); engine above the plain hybrid on both?")
    for world, values in table.iterrows():
        engine = (values[("gap_closed", "engine")], values[("gap_closed_non_readers", "engine")])
        plain = (values[("gap_closed", "plain hybrid")], values[("gap_closed_non_readers", "plain hybrid")])
        verdict = "yes" if engine[0] > plain[0] and engine[1] > plain[1] else "NO"
        print(f"  {world:<18} engine {engine[0]:.3f} | {engine[1]:.3f}   plain hybrid {plain[0]:.3f} | "
              f"{plain[1]:.3f}   {verdict}")


if __name__ == "__main__":
    main()
