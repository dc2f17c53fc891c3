"""Top-1 gap closed of one engine fit per world at every item appeal x wide weight, against the truth.

For each world of `benchmarks/quality.py` (the same synthetic presets and the shared independent
world) it chooses the epochs on the validation window as `recsys train` does, fits the engine once at
the world's as-of time, then applies every pair of `--appeals` x `--wides` to that fit (no refit) and
prints the share of the popularity-to-oracle gap in true top-1 open probability each closes, overall /
non-readers. It shows what the validation choice leaves on the table and whether a feature or model
change moves the whole surface rather than one noisy choice; the truth is read here, never by the
product.

    .venv/bin/python benchmarks/appeal_grid.py --users 5000
    .venv/bin/python benchmarks/appeal_grid.py --config my.yaml --world "merchants=--scenario merchants"
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
         wides: list[float]) -> None:
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
          f"wide {selection.wide_weight:g}", flush=True)
    for wide in wides:
        model.set_wide(wide, data)
        cells = []
        for appeal in appeals:
            model.set_item_appeal(appeal, data)
            overall, cold = score(world, top5(model, data, dataset, as_of), dataset, truth_path)
            cells.append(f"appeal {appeal:g} {overall:.3f} / {cold:.3f}")
        print(f"  wide {wide:<5g} " + "   ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=5_000)
    parser.add_argument("--appeals", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--wides", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    args = parser.parse_args()

    from training.config import load_config

    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="qianmian-appeal-grid-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            grid(name, world, as_of, truth_path, config, args.appeals, args.wides)


if __name__ == "__main__":
    main()
