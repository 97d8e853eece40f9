"""Checks opset-converted models against the ONNX backend suite's reference outputs.

Usage: check_converted_models.py MANIFEST.json

MANIFEST is a JSON list of {"id", "model", "case"}: a converted model and the backend case
directory it came from (with test_data_set_0/{input,output}_N.pb). Each model is checked with
onnx.checker.check_model, run in onnxruntime on the case's inputs, and its outputs compared with
the reference (rtol 1e-3, atol 1e-5 for floats; exact otherwise). A case whose original model
already fails in onnxruntime is reported with "baseline": true and not counted as failed.
Prints one JSON object: {"results": [{"id", "ok", "baseline", "error"}], "passed", "failed"}.
"""

import glob
import json
import os
import sys

import numpy as np
import onnx
import onnx.checker
import onnx.numpy_helper
import onnxruntime as ort


def load_tensors(case, kind):
    files = sorted(
        glob.glob(os.path.join(case, "test_data_set_0", f"{kind}_*.pb")),
        key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]),
    )
    out = []
    for path in files:
        t = onnx.TensorProto()
        with open(path, "rb") as f:
            t.ParseFromString(f.read())
        out.append(onnx.numpy_helper.to_array(t))
    return out


def check(model_path, case):
    model = onnx.load(model_path)
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    inputs = load_tensors(case, "input")
    got = sess.run(None, dict(zip(names, inputs)))
    for i, (g, want) in enumerate(zip(got, load_tensors(case, "output"))):
        g = np.asarray(g)
        if g.shape != want.shape:
            raise AssertionError(f"output {i}: shape {g.shape} != {want.shape}")
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(g, want, rtol=1e-3, atol=1e-5, err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, want, err_msg=f"output {i}")


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    results = []
    baseline = {}
    for entry in manifest:
        case = entry["case"]
        if case not in baseline:
            baseline[case] = error_of(os.path.join(case, "model.onnx"), case)
        error = error_of(entry["model"], case)
        results.append({"id": entry["id"], "ok": not error, "baseline": bool(baseline[case]), "error": error})
    passed = sum(r["ok"] for r in results)
    failed = sum(not r["ok"] and not r["baseline"] for r in results)
    print(json.dumps({"results": results, "passed": passed, "failed": failed}))


def error_of(model_path, case):
    try:
        check(model_path, case)
        return ""
    except Exception as e:  # report every failure, keep going
        return " ".join(str(e).strip().splitlines())[:400]


if __name__ == "__main__":
    main()
