#!/usr/bin/env python3
"""Side-by-side latency of runnx and onnxruntime on the ../shared/bench models.

Both engines run in this one process on the same inputs, alternating in rounds after warm-up, so
that machine noise hits both alike; the table gives each engine's median and the ratio
runnx / onnxruntime (below 1.0: runnx is faster). Outputs are checked against the reference
outputs first (rtol 1e-4, atol 1e-5), so a fast wrong answer does not count.

    .venv/bin/python scripts/bench_vs_ort.py                  # every model, threads 1 and 2, batch 1 and 8
    .venv/bin/python scripts/bench_vs_ort.py --models resnet18 --threads 1 --batch 1 --seconds 5

Not a test: timings on a shared machine are noisy, and CI has other work to do.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import time
from pathlib import Path

# numpy's OpenBLAS starts a thread per core that busy-waits for work; on a 2-core machine it
# competes with both engines' second thread (onnxruntime's 2-thread MNIST MLP ran 1.3x slower
# beside it). Nothing here needs BLAS threads. Set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import onnxruntime as ort

import runnx

MODELS = ["mnist_mlp", "mnist_cnn", "resnet18", "bert_tiny"]


def default_bench_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    return here.parent / "shared" / "bench" / "models"


def batched(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Repeats each input along axis 0 up to `batch` rows."""
    out = {}
    for name, x in feeds.items():
        reps = -(-batch // x.shape[0])
        out[name] = np.ascontiguousarray(np.concatenate([x] * reps, axis=0)[:batch])
    return out


def make_sessions(model: Path, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    ort_session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    ro = runnx.SessionOptions()
    ro.intra_op_num_threads = threads
    runnx_session = runnx.InferenceSession(str(model), ro)
    return runnx_session, ort_session


def check_outputs(session, feeds, reference: dict[str, np.ndarray], who: str) -> None:
    names = [o.name for o in session.get_outputs()]
    got = session.run(None, feeds)
    for name, value in zip(names, got):
        want = reference[name]
        if value.shape != want.shape or not np.allclose(value, want, rtol=1e-4, atol=1e-5):
            diff = np.max(np.abs(value.astype(np.float64) - want)) if value.shape == want.shape else "shape"
            raise SystemExit(f"{who}: output {name} differs from the reference (max abs diff {diff})")


def time_runs(session, feeds, seconds: float) -> list[float]:
    """Latencies in ms of back-to-back runs for about `seconds`."""
    times = []
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        session.run(None, feeds)
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1e3)
        if t1 > deadline and len(times) >= 5:
            return times


def bench(model: Path, threads: int, batch: int, seconds: float, rounds: int) -> dict:
    inputs = dict(np.load(model.with_suffix(".inputs.npz")))
    reference = dict(np.load(model.with_suffix(".outputs.npz")))
    ours, theirs = make_sessions(model, threads)
    check_outputs(ours, inputs, reference, "runnx")
    feeds = batched(inputs, batch)
    for s in (ours, theirs):
        time_runs(s, feeds, min(0.5, seconds / 4))  # warm-up
    samples = {"runnx": [], "onnxruntime": []}
    for _ in range(rounds):
        samples["runnx"] += time_runs(ours, feeds, seconds / rounds / 2)
        samples["onnxruntime"] += time_runs(theirs, feeds, seconds / rounds / 2)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "model": model.stem,
        "threads": threads,
        "batch": batch,
        "runnx_ms": med["runnx"],
        "onnxruntime_ms": med["onnxruntime"],
        "ratio": med["runnx"] / med["onnxruntime"],
    }


def on_fresh_thread(fn, *args):
    """Calls `fn(*args)` on a new thread and returns its result.

    runnx makes the calling thread a worker of a pool with the session's thread count (the first
    count a thread uses); sessions with another count on that thread hand each run to a pool of
    their own, which costs a few microseconds more. A fresh thread per configuration measures
    what a program that uses one setting gets. onnxruntime is unaffected either way.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-dir", type=Path, default=default_bench_dir())
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration, both engines")
    ap.add_argument("--rounds", type=int, default=6, help="alternations between the engines")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()

    rows = []
    print(f"{'model':<10} {'threads':>7} {'batch':>5} {'runnx ms':>10} {'ort ms':>10} {'ratio':>7}")
    for name in args.models:
        model = args.bench_dir / f"{name}.onnx"
        if not model.exists():
            print(f"skipping {name}: {model} not found", file=sys.stderr)
            continue
        for threads in args.threads:
            for batch in args.batch:
                r = on_fresh_thread(bench, model, threads, batch, args.seconds, args.rounds)
                rows.append(r)
                print(
                    f"{r['model']:<10} {threads:>7} {batch:>5} {r['runnx_ms']:>10.3f} "
                    f"{r['onnxruntime_ms']:>10.3f} {r['ratio']:>7.2f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
