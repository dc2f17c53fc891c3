"""CPU of one 1k `/v1/rank/batch` in one process: the body parsed and validated as FastAPI does it,
`rank_many` (records, ranking, caps on a real Redis, answers) and the JSON answer, without HTTP.

The scheduler wave of `api_load.py` measures the same work through uvicorn beside Redis and the load
generator; on a shared machine its CPU per batch moves with the other jobs by several ms, while this
loop (thread CPU time, median of --batches) isolates the API's own work. Run it with another checkout
on `PYTHONPATH` to measure that checkout's code on the same world, alternating the two:

    .venv/bin/python benchmarks/batch_cpu.py --users 20000
    PYTHONPATH=../main-export .venv/bin/python benchmarks/batch_cpu.py --users 20000

`--answers FILE` writes every answer (one batch a line) for a byte-for-byte comparison of two checkouts
(push ids and the publication time in `model_version` differ by design). `--steps` adds each step's CPU
per batch (thread CPU time around the step's function; a step called inside another counts once, in
the outer one) and Redis's CPU per batch (from `/proc`). `--response` publishes the bundle beside push
response models fitted on the world's push log (made once under --work-dir), so that every answer is
decided by send or hold (`recsys.decision`), as with a version from `recsys train`. `--sends N` (with
`--response`) first gives every cardholder N marketing pushes sent after the response model's
`history_until` and before the first batch, every third one opened, applied as `POST /v1/events` applies
`sent` and `opened` (the caps engine's event calls, with event ids), so that the batches read them back
and move each cardholder's daily wave (`recsys.live_hours`); it prints that run's figures beside those of
a run without sends in the same process (each on a freshly published Redis). The sends take the
cardholders' caps (four fill the default policy's month), so with them the caps answer every
reservation blocked: the steps' outlooks are the like-for-like part.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import _server_env, published_world, wave_bodies  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 5


class StepTimer:
    """Thread CPU time spent in named functions, each wrapped where callers look it up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth: dict[str, int] = defaultdict(int)
        self.wrapped = False

    def wrap(self, owner: Any, name: str, label: str) -> None:
        function = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth[label] += 1
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[label] -= 1
                if not self._depth[label]:  # a recursive call (blocks of rank_block) counts once
                    self.seconds[label] += time.thread_time() - started

        setattr(owner, name, timed)

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] += seconds


def wrap_steps(timer: StepTimer) -> None:
    """The steps of `rank_many` worth naming (README, "Load"): each function as the code calls it."""
    import serving.ranker as ranker
    from recsys.caps.redis_engine import RedisCapEngine
    from recsys.response_model import PushResponseModel
    from serving.pipeline import Cardholders, LiveModel
    from serving.state import ServingState

    timer.wrap(ServingState, "user_records", "records from the worker's copy")
    timer.wrap(ranker, "representations", "record decoding")
    timer.wrap(RedisCapEngine, "load_records", "caps records read (load_records)")
    timer.wrap(ranker, "pushed_since", "content pushed since the publication (pushed_since)")
    timer.wrap(Cardholders, "also_seen", "  kept out of the ranking (also_seen)")
    timer.wrap(LiveModel, "rank_block", "batch ranking (rank_block)")
    timer.wrap(ranker, "outlooks", "send-or-hold outlooks")
    # inside the outlooks: the sends since the fit read back and the daily waves they move
    timer.wrap(ranker, "live_sends", "  of it, live sends' hours (live_sends)")
    timer.wrap(PushResponseModel, "live_wave", "  of it, the waves moved (live_wave)")
    timer.wrap(ranker, "cap_requests", "caps requests (cap_requests)")
    timer.wrap(RedisCapEngine, "decide_batch", "caps call, client side")
    timer.wrap(LiveModel, "reasons_many", "reasons")
    timer.wrap(ranker, "answers", "answer bodies, with their reasons")
    timer.wrapped = True


def apply_sends(engine: Any, users: list[str], count: int, since: pd.Timestamp, until: pd.Timestamp
                ) -> tuple[int, int]:
    """`count` marketing pushes to every cardholder, reported sent at even steps in (since, until), every
    third opened five seconds after it was sent (which third moves with the cardholder); (sends, opens)."""
    from recsys.caps.decisions import Candidate

    step = (until - since) / (count + 1)
    opens = 0
    for n, user in enumerate(users):
        for k in range(count):
            sent_at = (since + step * (k + 1)).to_pydatetime()
            push_id = f"bench-live-{k}"
            engine.confirm(user, push_id, now=sent_at, event_id=f"{push_id}-s",
                           sent=Candidate(f"bench-live-item-{k}"))
            if (n + k) % 3 == 0:
                engine.record_open(user, now=sent_at + timedelta(seconds=5), push_id=push_id,
                                   event_id=f"{push_id}-o")
                opens += 1
    return count * len(users), opens


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=60, help="timed 1k batches (after 5 warm-up ones)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--answers", type=Path, help="write every answer here, one batch a line")
    parser.add_argument("--steps", action="store_true", help="also report the CPU of each step per batch")
    parser.add_argument("--response", action="store_true",
                        help="a bundle with push response models: the send-or-hold path (recsys.decision)")
    parser.add_argument("--sends", type=int, default=0,
                        help="with --response: marketing pushes sent (every third opened) to every "
                             "cardholder after the response model's fit and before the first batch (at most "
                             "8 are kept); timed beside a run without them")
    args = parser.parse_args()
    if args.sends and not args.response:
        parser.error("--sends needs --response: without response models nothing reads them")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    steps = StepTimer()
    for sends in sorted({0, args.sends}):
        measure(args, sends, steps)
    return 0


def measure(args: argparse.Namespace, sends: int, steps: StepTimer) -> None:
    """One timed run on a freshly published world, its cardholders sent `sends` pushes each first."""
    with published_world(args.work_dir, args.users, "batch-cpu-", args.response) as published:
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
        first = as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(hours=10)
        bodies = wave_bodies(users, first)
        if args.steps and not steps.wrapped:
            wrap_steps(steps)
        label = f"{sends} sends a cardholder"
        if sends:
            history_until = pd.Timestamp(state.snapshot().model.response.history_until, unit="s", tz="UTC")
            started = time.monotonic()
            sent, opened = apply_sends(state.engine, users, sends, history_until, first)
            label += f" ({sent:,} sent, {opened:,} opened, applied in {time.monotonic() - started:.0f} s)"
        redis_pid = published.redis_server.process.pid
        gc.collect()
        gc.freeze()  # as a server process does (serving.app)
        threshold = gc.get_threshold()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *threshold[1:])
        cpu_ms, answers = [], []
        for index in range(WARM_UP + args.batches):
            if index == WARM_UP:
                steps.seconds.clear()
                redis_started = process_cpu_seconds(redis_pid)
            raw = next(bodies)
            started = time.thread_time()
            body = BatchRankRequest.model_validate(json.loads(raw))
            validated = time.thread_time()
            snapshot, results = rank_many(state, body.requests)
            ranked = time.thread_time()
            payload = encode_json({"results": results, "model_version": snapshot.model.version,
                                   **registry_of(snapshot.model)})
            done = time.thread_time()
            steps.add("body parsed and validated", validated - started)
            steps.add("rank_many", ranked - validated)
            steps.add("JSON answer", done - ranked)
            if index >= WARM_UP:
                cpu_ms.append((done - started) * 1e3)
            if args.answers is not None:
                answers.append(payload)
        redis_ms = (process_cpu_seconds(redis_pid) - redis_started) * 1e3 / args.batches
        state.close()
        gc.set_threshold(*threshold)
        gc.unfreeze()
        if args.answers is not None:  # with --sends, the run with them
            args.answers.write_bytes(b"\n".join(answers))
        cpu_ms.sort()
        print(f"CPU per 1k batch over {len(cpu_ms)} batches: median {statistics.median(cpu_ms):.1f} ms, "
              f"min {cpu_ms[0]:.1f} ms, max {cpu_ms[-1]:.1f} ms (load average {os.getloadavg()[0]:.1f}; "
              f"{label})")
        if args.steps:
            for name, seconds in steps.seconds.items():
                print(f"  {name:36s} {seconds * 1e3 / args.batches:6.2f} ms per batch (mean)")
            print(f"  {'Redis (its process)':36s} {redis_ms:6.2f} ms per batch (mean)")


if __name__ == "__main__":
    raise SystemExit(main())
