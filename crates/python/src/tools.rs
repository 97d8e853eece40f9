//! `runnx._runnx.tools_*`: the model tools (check, infer-shapes, optimize, print/parse, weights)
//! over `runnx-tools`, `runnx-shapes` and the runtime's optimizer. `python/runnx/tools.py` gives
//! them their Python signatures. Models come in as bytes or a path and go out as bytes.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList};
use runnx_ir::{Model, Tensor, Value};
use runnx_onnx::{FormatError, LoadedModel};
use runnx_runtime::OptimizationLevel;
use runnx_tools::numeric::Tolerance;
use runnx_tools::text::TextFormat;
use runnx_tools::weights::{self, TensorStatus};
use runnx_tools::ToolError;

use crate::convert::{tensor_from_py, value_to_py};
use crate::errors::{
    INVALID_ARGUMENT, INVALID_GRAPH, INVALID_PROTOBUF, NO_SUCH_FILE, RUNTIME_EXCEPTION,
};

/// A model argument: serialised bytes, or a path (external data then resolves beside it).
fn load(model: &Bound<'_, PyAny>) -> PyResult<LoadedModel> {
    if let Ok(bytes) = model.cast::<PyBytes>() {
        let backed = PyBackedBytes::from(bytes.clone());
        return LoadedModel::from_bytes(bytes::Bytes::from_owner(backed))
            .map_err(|e| INVALID_PROTOBUF.err(format!("model bytes: {e}")));
    }
    let path: PathBuf = model.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(
            "a model is a path (str or os.PathLike), bytes or an onnx.ModelProto",
        )
    })?;
    runnx_onnx::load_model(&path).map_err(|e| match e {
        FormatError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NO_SUCH_FILE.err(e.to_string())
        }
        other => INVALID_PROTOBUF.err(format!("{}: {other}", path.display())),
    })
}

fn to_ir(loaded: &LoadedModel) -> PyResult<Model> {
    runnx_ir::convert::model_from_proto(loaded).map_err(|e| INVALID_GRAPH.err(e.to_string()))
}

fn model_bytes<'py>(py: Python<'py>, model: &Model) -> Bound<'py, PyBytes> {
    use prost::Message;
    PyBytes::new(
        py,
        &runnx_ir::convert::model_to_proto(model).encode_to_vec(),
    )
}

fn tool_error(e: ToolError) -> PyErr {
    match e {
        ToolError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NO_SUCH_FILE.err(e.to_string())
        }
        ToolError::Io { .. } => RUNTIME_EXCEPTION.err(e.to_string()),
        ToolError::Format(_) => INVALID_PROTOBUF.err(e.to_string()),
        _ => INVALID_ARGUMENT.err(e.to_string()),
    }
}

/// Every problem `runnx check` finds: `(severity, location, message)` tuples.
#[pyfunction]
pub fn tools_check_model(model: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String, String)>> {
    let loaded = load(model)?;
    let problems = model
        .py()
        .detach(|| runnx_tools::check::check_model(&loaded));
    Ok(problems
        .into_iter()
        .map(|p| {
            let severity = match p.severity {
                runnx_tools::check::Severity::Error => "error",
                runnx_tools::check::Severity::Warning => "warning",
            };
            (severity.to_string(), p.location, p.message)
        })
        .collect())
}

/// The model with inferred types and shapes as value_info, and the problems found.
#[pyfunction]
#[pyo3(signature = (model, strict=false))]
pub fn tools_infer_shapes<'py>(
    model: &Bound<'py, PyAny>,
    strict: bool,
) -> PyResult<(Bound<'py, PyBytes>, Vec<String>)> {
    use prost::Message;
    let py = model.py();
    let mut loaded = load(model)?;
    let options = runnx_shapes::InferOptions { strict };
    let inference = py
        .detach(|| runnx_tools::shapes::infer_into(&mut loaded, &options))
        .map_err(|e| INVALID_GRAPH.err(e.to_string()))?;
    let problems = inference.problems.iter().map(|p| p.to_string()).collect();
    Ok((PyBytes::new(py, &loaded.proto.encode_to_vec()), problems))
}

/// The model optimized at `level` (disabled, basic, extended, all), as `runnx optimize`.
#[pyfunction]
#[pyo3(signature = (model, level="basic"))]
pub fn tools_optimize_model<'py>(
    model: &Bound<'py, PyAny>,
    level: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let level = match level {
        "disabled" => OptimizationLevel::Disabled,
        "basic" => OptimizationLevel::Basic,
        "extended" => OptimizationLevel::Extended,
        "all" => OptimizationLevel::All,
        other => {
            return Err(INVALID_ARGUMENT.err(format!(
                "unknown optimization level '{other}': use disabled, basic, extended or all"
            )))
        }
    };
    let mut ir = to_ir(&load(model)?)?;
    model
        .py()
        .detach(|| runnx_runtime::optimize_model(&mut ir, level))
        .map_err(|e| INVALID_GRAPH.err(e.to_string()))?;
    Ok(model_bytes(model.py(), &ir))
}

fn text_format(name: &str) -> PyResult<TextFormat> {
    match name {
        "text" => Ok(TextFormat::Text),
        "prototxt" => Ok(TextFormat::Prototxt),
        "json" => Ok(TextFormat::Json),
        other => Err(INVALID_ARGUMENT.err(format!(
            "unknown text format '{other}': use text, prototxt or json"
        ))),
    }
}

/// The model as text: the ONNX textual syntax, protobuf text format or JSON.
#[pyfunction]
#[pyo3(signature = (model, format="text"))]
pub fn tools_print_model(model: &Bound<'_, PyAny>, format: &str) -> PyResult<String> {
    let format = text_format(format)?;
    let loaded = load(model)?;
    let ir = to_ir(&loaded)?;
    runnx_tools::text::print_model(&loaded.proto, &ir, format).map_err(tool_error)
}

/// A model parsed from text (format guessed when `None`), as bytes.
#[pyfunction]
#[pyo3(signature = (text, format=None))]
pub fn tools_parse_model<'py>(
    py: Python<'py>,
    text: &str,
    format: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    use prost::Message;
    let format = match format {
        Some(f) => text_format(f)?,
        None => TextFormat::sniff(text),
    };
    let proto = runnx_tools::text::parse_model(text, format).map_err(tool_error)?;
    Ok(PyBytes::new(py, &proto.encode_to_vec()))
}

/// The model's initializers as a dict of numpy arrays, in model order.
#[pyfunction]
pub fn tools_export_weights<'py>(model: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let py = model.py();
    let ir = to_ir(&load(model)?)?;
    let out = PyDict::new(py);
    for (name, tensor) in weights::export_weights(&ir) {
        out.set_item(&name, value_to_py(py, Value::Tensor(tensor), &name)?)?;
    }
    Ok(out)
}

/// Weights given as a path (.npz, .safetensors, torch.save archive) or a dict of arrays.
fn read_weights(weights: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Tensor)>> {
    if let Ok(dict) = weights.cast::<PyDict>() {
        let mut tensors = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let name: String = k.extract()?;
            let tensor = tensor_from_py(&v, None, &name)?;
            tensors.push((name, tensor));
        }
        return Ok(tensors);
    }
    let path: PathBuf = weights.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(
            "weights are a path (.npz, .safetensors, a torch.save file) or a dict of arrays",
        )
    })?;
    let (_, tensors) = weights::read_weights(&path).map_err(tool_error)?;
    Ok(tensors)
}

/// Each matched initializer against its weight: a list of dicts (`name`, `weight`, `status`,
/// and `max_abs_diff`, `max_rel_diff`, `mismatches` (outside the tolerance), `count` when compared), plus the names
/// missing on either side.
#[pyfunction]
#[pyo3(signature = (model, weights, rtol=1e-5, atol=1e-8))]
pub fn tools_diff_weights<'py>(
    model: &Bound<'py, PyAny>,
    weights: &Bound<'py, PyAny>,
    rtol: f64,
    atol: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let py = model.py();
    let ir = to_ir(&load(model)?)?;
    let tensors = read_weights(weights)?;
    let diff = weights::diff_weights(&ir, &tensors, Tolerance { rtol, atol });
    let rows = PyList::empty(py);
    for t in &diff.tensors {
        let row = PyDict::new(py);
        row.set_item("name", &t.name)?;
        row.set_item("weight", &t.weight)?;
        row.set_item("differs", t.differs())?;
        match &t.status {
            TensorStatus::Compared { closeness, .. } => {
                row.set_item("status", if t.differs() { "differs" } else { "matches" })?;
                row.set_item("max_abs_diff", closeness.max_abs_diff)?;
                row.set_item("max_rel_diff", closeness.max_rel_diff)?;
                row.set_item("mismatches", closeness.outside)?;
                row.set_item("count", closeness.total)?;
            }
            TensorStatus::ShapeMismatch { model, weights } => {
                row.set_item("status", "shape mismatch")?;
                row.set_item("model_shape", model.clone())?;
                row.set_item("weights_shape", weights.clone())?;
            }
            TensorStatus::TypeMismatch { model, weights } => {
                row.set_item("status", "type mismatch")?;
                row.set_item("model_dtype", model.name())?;
                row.set_item("weights_dtype", weights.name())?;
            }
        }
        rows.append(row)?;
    }
    let out = PyDict::new(py);
    out.set_item("tensors", rows)?;
    out.set_item("missing_in_model", diff.missing_in_model.clone())?;
    out.set_item("missing_in_weights", diff.missing_in_weights.clone())?;
    Ok(out)
}

/// The model with every initializer that has a same-named weight replaced, as bytes.
#[pyfunction]
pub fn tools_patch_weights<'py>(
    model: &Bound<'py, PyAny>,
    weights: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut ir = to_ir(&load(model)?)?;
    let tensors = read_weights(weights)?;
    weights::patch_weights(&mut ir, &tensors).map_err(tool_error)?;
    Ok(model_bytes(model.py(), &ir))
}

/// The model converted to opset `target` of the default domain, as bytes.
#[pyfunction]
pub fn tools_convert_opset<'py>(
    model: &Bound<'py, PyAny>,
    target: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let ir = to_ir(&load(model)?)?;
    let converted = runnx_opset::convert_opset(&ir, target).map_err(|e| match e {
        runnx_opset::OpsetError::BadTarget { .. } | runnx_opset::OpsetError::NoDefaultOpset => {
            INVALID_ARGUMENT.err(e.to_string())
        }
        _ => crate::errors::NOT_IMPLEMENTED.err(e.to_string()),
    })?;
    Ok(model_bytes(model.py(), &converted))
}
