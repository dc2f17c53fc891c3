"""CPU of one 1k `/v1/rank/batch` in one process: the body parsed and validated as FastAPI does it,
`rank_many` (records, ranking, caps on a real Redis, answers) and the JSON answer, without HTTP.

The scheduler wave of `api_load.py` measures the same work through uvicorn beside Redis and the load
generator; on a shared machine its CPU per batch moves with the other jobs by several ms, while this
loop (thread CPU time, median of --batches) isolates the API's own work. Run it with another checkout
on `PYTHONPATH` to measure that checkout's code on the same world, alternating the two:

    .venv/bin/python benchmarks/batch_cpu.py --users 20000
    PYTHONPATH=../main-export .venv/bin/python benchmarks/batch_cpu.py --users 20000

`--answers FILE` writes every answer (one batch a line) for a byte-for-byte comparison of two checkouts
(push ids and the publication time in `model_version` differ by design).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import _server_env, published_world, wave_bodies  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=60, help="timed 1k batches (after 5 warm-up ones)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--answers", type=Path, help="write every answer here, one batch a line")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    with published_world(args.work_dir, args.users, "batch-cpu-") as published:
        as_of, users = published.as_of, published.users
        os.environ.update(_server_env(published.redis_server.url, published.home, as_of))

        from recsys.config import Settings
        from serving.app import YOUNG_GC_THRESHOLD
        from serving.ranker import rank_many, registry_of
        from serving.responses import encode_json
        from serving.schemas import BatchRankRequest
        from serving.state import ServingState

        state = ServingState(Settings())
        state.start()
        deadline = time.monotonic() + 60
        while not (state.records is not None and state.records.complete) and time.monotonic() < deadline:
            time.sleep(0.1)  # the worker's copy of the records, as a warmed-up server holds it
        bodies = wave_bodies(users, as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(hours=10))
        gc.collect()
        gc.freeze()  # as a server process does (serving.app)
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        cpu_ms, answers = [], []
        for index in range(WARM_UP + args.batches):
            raw = next(bodies)
            started = time.thread_time()
            body = BatchRankRequest.model_validate(json.loads(raw))
            snapshot, results = rank_many(state, body.requests)
            payload = encode_json({"results": results, "model_version": snapshot.model.version,
                                   **registry_of(snapshot.model)})
            if index >= WARM_UP:
                cpu_ms.append((time.thread_time() - started) * 1e3)
            if args.answers is not None:
                answers.append(payload)
        state.close()
        if args.answers is not None:
            args.answers.write_bytes(b"\n".join(answers))
        cpu_ms.sort()
        print(f"CPU per 1k batch over {len(cpu_ms)} batches: median {statistics.median(cpu_ms):.1f} ms, "
              f"min {cpu_ms[0]:.1f} ms, max {cpu_ms[-1]:.1f} ms (load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
