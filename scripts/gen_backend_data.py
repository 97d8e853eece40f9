#!/usr/bin/env python3
"""Write the ONNX backend conformance test data for the Rust test runner.

Run with the dev venv's interpreter (scripts/setup-venv.sh), e.g.

    .venv/bin/python scripts/gen_backend_data.py [--out DIR] [--force]

Output directory: --out DIR, else $RUNNX_BACKEND_DATA, else
<repo>/.cache/onnx-backend. Layout:

    OUT/.complete                          installed onnx version (stamp)
    OUT/<suite>/<case>/model.onnx
    OUT/<suite>/<case>/meta.json           {"rtol": ..., "atol": ...}
    OUT/<suite>/<case>/test_data_set_N/input_K.pb, output_K.pb

Suites:
  node               generated from onnx.backend.test.case.node.collect_testcases,
                     serialised by onnx's own cmd_tools.generate_data (tensors,
                     sequences, maps and optionals are written with
                     numpy_helper.from_array/from_list/from_dict/from_optional,
                     typed by the model's graph inputs/outputs). The onnx wheel
                     does not ship data/node, so this is the only source.
  simple, pytorch-converted, pytorch-operator
                     copied from the data shipped in the onnx package
                     (onnx/backend/test/data/<suite>).

The K-th input_K.pb / output_K.pb pairs with the K-th graph input / output of
model.onnx; the file holds a TensorProto, SequenceProto, MapProto or
OptionalProto according to that input's/output's type.

meta.json carries the tolerance onnx's backend runner uses for the case
(TestCase.rtol / TestCase.atol; rtol 1e-3 and atol 1e-7 unless onnx says
otherwise). onnx's runner additionally raises rtol to 2**-6 for bfloat16
outputs and compares string outputs exactly.

Generation happens once: if OUT/.complete names the installed onnx version the
script exits at once. Data is written to a temporary sibling directory and
renamed into place at the end, so an interrupted run leaves no partial data.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.backend.test.case.node as node_cases
from onnx.backend.test import cmd_tools

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / ".cache" / "onnx-backend"
STAMP = ".complete"
SHIPPED_DATA = Path(cmd_tools.DATA_DIR)
SHIPPED_SUITES = ("simple", "pytorch-converted", "pytorch-operator")
# onnx's backend runner defaults (onnx/backend/test/loader/__init__.py).
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-7


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: $RUNNX_BACKEND_DATA or "
        f"{DEFAULT_OUT.relative_to(REPO_ROOT)} under the repo root)",
    )
    p.add_argument(
        "--force", action="store_true", help="regenerate even if up to date"
    )
    return p.parse_args()


def resolve_out(arg: Path | None) -> Path:
    if arg is not None:
        out = arg
    elif os.environ.get("RUNNX_BACKEND_DATA"):
        out = Path(os.environ["RUNNX_BACKEND_DATA"])
    else:
        out = DEFAULT_OUT
    return out.expanduser().absolute()


def is_complete(out: Path) -> bool:
    try:
        return (out / STAMP).read_text().strip() == onnx.__version__
    except OSError:
        return False


def write_meta(case_dir: Path, rtol: float, atol: float) -> None:
    (case_dir / "meta.json").write_text(
        json.dumps({"rtol": rtol, "atol": atol}, sort_keys=True) + "\n"
    )


def gen_node(out: Path) -> int:
    """Node cases, written by onnx's own cmd_tools.generate_data."""
    # Many case generators draw from np.random without a seed; fix it so
    # the data is the same on every machine.
    np.random.seed(0)
    with warnings.catch_warnings():
        # Cast/reduce cases overflow or divide by zero on purpose.
        warnings.simplefilter("ignore")
        cases = list(node_cases.collect_testcases(None))
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise RuntimeError("duplicate node test case names")
    if any(c.kind != "node" or c.model is None for c in cases):
        raise RuntimeError("unexpected node test case without a model")

    # cmd_tools.generate_data serialises every TestCase returned by
    # `model_test.collect_testcases()` into OUTPUT/<kind>/<name>/ (the same
    # code onnx used to write data/node). Point it at the node cases.
    saved = cmd_tools.model_test
    cmd_tools.model_test = types.SimpleNamespace(collect_testcases=lambda: cases)
    try:
        cmd_tools.generate_data(argparse.Namespace(output=str(out)))
    finally:
        cmd_tools.model_test = saved

    for c in cases:
        write_meta(out / "node" / c.name, c.rtol, c.atol)
    return len(cases)


def copy_shipped(out: Path, suite: str) -> int:
    src_suite = SHIPPED_DATA / suite
    dst_suite = out / suite
    dst_suite.mkdir(parents=True)
    n = 0
    for src in sorted(src_suite.iterdir()):
        if not src.is_dir() or not (src / "model.onnx").is_file():
            continue
        data_sets = sorted(src.glob("test_data_set_*"))
        if not data_sets:
            # Older onnx releases shipped some cases as test_data_*.npz only;
            # the pinned release has none, so this is not handled.
            raise RuntimeError(f"{src}: no test_data_set_* directory")
        rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
        data_json = src / "data.json"
        if data_json.is_file():
            data = json.loads(data_json.read_text())
            rtol = data.get("rtol", rtol)
            atol = data.get("atol", atol)
        dst = dst_suite / src.name
        dst.mkdir()
        shutil.copyfile(src / "model.onnx", dst / "model.onnx")
        for ds in data_sets:
            pbs = sorted(ds.glob("*put_*.pb"))
            if not any(p.name.startswith("output_") for p in pbs):
                raise RuntimeError(f"{ds}: no output_*.pb")
            (dst / ds.name).mkdir()
            for pb in pbs:
                shutil.copyfile(pb, dst / ds.name / pb.name)
        write_meta(dst, rtol, atol)
        n += 1
    return n


def generate(out: Path) -> dict[str, int]:
    counts = {"node": gen_node(out)}
    for suite in SHIPPED_SUITES:
        counts[suite] = copy_shipped(out, suite)
    return counts


def main() -> int:
    args = parse_args()
    out = resolve_out(args.out)
    if not args.force and is_complete(out):
        print(f"onnx backend data for onnx {onnx.__version__} already in {out}")
        return 0

    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Kept after the run: unlinking a lock file others may be waiting on races.
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have finished while we waited for the lock.
        if not args.force and is_complete(out):
            print(f"onnx backend data for onnx {onnx.__version__} already in {out}")
            return 0
        # Left-overs of interrupted runs (we hold the lock, so none is live).
        for stale in out.parent.glob(f".{out.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in out.parent.glob(f".{out.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)

        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        try:
            tmp.mkdir()
            counts = generate(tmp)
            (tmp / STAMP).write_text(onnx.__version__ + "\n")
            old = None
            if out.exists() or out.is_symlink():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()

    total = sum(counts.values())
    width = max(map(len, counts))
    print(f"onnx {onnx.__version__} backend data in {out}:")
    for suite, n in counts.items():
        print(f"  {suite:<{width}} {n:5d}")
    print(f"  {'total':<{width}} {total:5d}  ({time.monotonic() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
