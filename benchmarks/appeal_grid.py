"""Top-1 gap closed of one engine fit per world at every item appeal x wide weight (x the wide part's tag
prior), against the truth.

For each world of `benchmarks/quality.py` (the same synthetic presets and the shared independent
world) it chooses the epochs on the validation window as `recsys train` does, fits the engine once at
the world's as-of time, then applies every pair of `--appeals` x `--wides` (at each of `--tag-priors`,
default the configuration's `wide_tag_prior`) to that fit (no refit) and
prints the share of the popularity-to-oracle gap in true top-1 open probability each closes, overall /
non-readers. It shows what the validation choice leaves on the table and whether a feature or model
change moves the whole surface rather than one noisy choice; the truth is read here, never by the
product.

    .venv/bin/python benchmarks/appeal_grid.py --users 5000
    .venv/bin/python benchmarks/appeal_grid.py --config my.yaml --world "merchants=--scenario merchants"
    .venv/bin/python benchmarks/appeal_grid.py --users 3000 --wides 0.25 0.5 --tag-priors 0 10 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import score, top5, world_arguments, worlds  # noqa: E402


def grid(name: str, world: Path, as_of, truth_path: Path | None, config, appeals: list[float],
         wides: list[float], tag_priors: list[float] | None = None) -> None:
    import pandas as pd

    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from training.selection import choose_on_validation

    dataset = load_dataset(world)
    selection = choose_on_validation(dataset, as_of - pd.Timedelta(days=config.holdout_days), config,
                                     echo=lambda line: None)
    chosen = selection.apply(config)
    data, _ = build_training_matrices(dataset, as_of, chosen.features)
    model = chosen.model.build().fit(data)
    print(f"{name}: {selection.epochs} epochs; validation chose appeal {selection.item_appeal_weight:g}, "
          f"wide {selection.wide_weight:g}, tag prior {selection.wide_tag_prior:g}", flush=True)
    priors = tag_priors if tag_priors is not None else [model.wide_tag_prior]
    for prior in priors:
        for wide in (wides if prior == priors[0] else [wide for wide in wides if wide]):
            model.set_wide(wide, data, tag_prior=prior)
            cells = []
            for appeal in appeals:
                model.set_item_appeal(appeal, data)
                overall, cold = score(world, top5(model, data, dataset, as_of), dataset, truth_path)
                cells.append(f"appeal {appeal:g} {overall:.3f} / {cold:.3f}")
            print(f"  tags {prior:<5g} wide {wide:<5g} " + "   ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=5_000)
    parser.add_argument("--appeals", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--wides", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--tag-priors", type=float, nargs="+", default=None,
                        help="the wide part's tag priors (default: the configuration's)")
    args = parser.parse_args()

    from training.config import load_config

    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="qianmian-appeal-grid-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            grid(name, world, as_of, truth_path, config, args.appeals, args.wides, args.tag_priors)


if __name__ == "__main__":
    main()
