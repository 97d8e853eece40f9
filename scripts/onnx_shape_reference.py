"""Reference data for runnx's shape inference tests: onnx's own inference on stripped models.

Usage: onnx_shape_reference.py OUT_DIR < list of "ID<TAB>MODEL_PATH" lines

For each model it clears what the model itself says about intermediate and output shapes
(value_info is emptied, graph outputs keep only their element type), saves that stripped model
as OUT_DIR/ID.onnx, runs onnx.shape_inference.infer_shapes on it (strict_mode off, no data
propagation) and writes what onnx inferred, plus the original output types, as OUT_DIR/ID.json:
{"onnx": {name: type}, "declared_outputs": {name: type}, "error": str|null}
where a type is {"tensor": elem_type, "shape": null | [int | str | null]} or {"other": str}.
"""

import json
import os
import sys

import onnx
import onnx.shape_inference


def describe(tp):
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        t = tp.tensor_type
        shape = None
        if t.HasField("shape"):
            shape = []
            for d in t.shape.dim:
                if d.HasField("dim_value"):
                    shape.append(d.dim_value)
                elif d.HasField("dim_param"):
                    shape.append(d.dim_param)
                else:
                    shape.append(None)
        return {"tensor": t.elem_type, "shape": shape}
    return {"other": kind or "none"}


def strip(model):
    g = model.graph
    declared = {o.name: describe(o.type) for o in g.output}
    del g.value_info[:]
    for o in g.output:
        if o.type.WhichOneof("value") == "tensor_type":
            o.type.tensor_type.ClearField("shape")
    return declared


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        case_id, path = line.split("\t")
        model = onnx.load(path)
        declared = strip(model)
        stripped_path = os.path.join(out_dir, case_id + ".onnx")
        onnx.save(model, stripped_path)
        result = {"onnx": {}, "declared_outputs": declared, "error": None}
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
            g = inferred.graph
            for vi in list(g.value_info) + list(g.output):
                if vi.type.WhichOneof("value") is not None:
                    result["onnx"][vi.name] = describe(vi.type)
        except Exception as e:  # onnx refused the model: nothing to compare against
            result["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        with open(os.path.join(out_dir, case_id + ".json"), "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
