//! `runnx._runnx.Session`: a `runnx_runtime::Session` seen from Python. The onnxruntime-style
//! `InferenceSession` (python/runnx/session.py) wraps it.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use runnx_ir::{Dim, ValueInfo, ValueType};
use runnx_runtime::{OptimizationLevel, Session, SessionOptions};

use crate::convert::{check_feed_key, value_from_py, value_to_py};
use crate::errors::{load_error, run_error};

/// A planned model. `run` releases the GIL while the model runs, so several Python threads can
/// run one session at once.
#[pyclass(frozen, module = "runnx._runnx", name = "Session")]
pub struct PySession {
    session: Session,
    /// The inputs a caller feeds, with their declared types, in graph order.
    inputs: Vec<(String, ValueType)>,
    /// Every output's name, in graph order (what `run(None, ...)` returns).
    output_names: Vec<String>,
}

/// onnxruntime's `GraphOptimizationLevel` values (0, 1, 2, 3 = ORT_ENABLE_LAYOUT, 99) to runnx's.
fn optimization_level(level: i64) -> PyResult<OptimizationLevel> {
    Ok(match level {
        0 => OptimizationLevel::Disabled,
        1 => OptimizationLevel::Basic,
        2 => OptimizationLevel::Extended,
        // runnx has no separate layout level: the layout optimisations belong to "all".
        3 | 99 => OptimizationLevel::All,
        other => {
            return Err(PyValueError::new_err(format!(
            "graph_optimization_level {other} is not a GraphOptimizationLevel (0, 1, 2, 3 or 99)"
        )))
        }
    })
}

#[pymethods]
impl PySession {
    /// `model` is a path (str or os.PathLike) or the model's bytes.
    #[new]
    #[pyo3(signature = (model, intra_op_threads = 0, optimization_level = 99, optimized_model_path = None))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        intra_op_threads: usize,
        optimization_level: i64,
        optimized_model_path: Option<PathBuf>,
    ) -> PyResult<Self> {
        let options = SessionOptions {
            intra_op_threads,
            optimization_level: self::optimization_level(optimization_level)?,
            optimized_model_path,
        };
        let session =
            if let Ok(bytes) = model.cast::<PyBytes>() {
                // The session reads the Python bytes object in place (it keeps a reference).
                let backed = PyBackedBytes::from(bytes.clone());
                py.detach(|| Session::from_bytes(bytes::Bytes::from_owner(backed), &options))
                    .map_err(|e| load_error(e, "model bytes"))?
            } else {
                let path: PathBuf =
                    model.extract().map_err(|_| {
                        pyo3::exceptions::PyTypeError::new_err(format!(
                    "cannot load a model from {}: pass a path (str or os.PathLike) or bytes",
                    model.get_type().name().map_or_else(|_| "?".to_string(), |n| n.to_string())
                ))
                    })?;
                py.detach(|| Session::from_file(&path, &options))
                    .map_err(|e| load_error(e, &path.display().to_string()))?
            };
        let inputs = session
            .inputs()
            .map(|vi| (vi.name.clone(), vi.ty.clone()))
            .collect();
        let output_names = session.outputs().map(|vi| vi.name.clone()).collect();
        Ok(PySession {
            session,
            inputs,
            output_names,
        })
    }

    /// Runs the model: `output_names` None or empty means every output, in graph order.
    /// Returns a list with one numpy array (list for a sequence, dict for a map, None for an
    /// empty optional) per requested output.
    #[pyo3(signature = (output_names, input_feed, run_options = None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        output_names: Option<Vec<String>>,
        input_feed: &Bound<'py, PyDict>,
        run_options: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let _ = run_options;
        let mut feeds = Vec::with_capacity(input_feed.len());
        for (key, obj) in input_feed.iter() {
            let name = check_feed_key(&key)?;
            let ty = self
                .inputs
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(&ValueType::Unknown, |(_, ty)| ty);
            let value = value_from_py(&obj, ty, &name)?;
            feeds.push((name, value));
        }
        let output_names = output_names.filter(|names| !names.is_empty());
        let session = &self.session;
        let outputs = py
            .detach(|| session.run(feeds, output_names.as_deref()))
            .map_err(run_error)?;
        let names = output_names.as_deref().unwrap_or(&self.output_names);
        let list = PyList::empty(py);
        for (value, name) in outputs.into_iter().zip(names) {
            list.append(value_to_py(py, value, name)?)?;
        }
        Ok(list)
    }

    /// `(name, type, shape)` of each input a caller feeds.
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.session.inputs().map(|vi| node_arg(py, vi)).collect()
    }

    /// `(name, type, shape)` of each output.
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.session.outputs().map(|vi| node_arg(py, vi)).collect()
    }

    /// `(name, type, shape)` of each initializer that is also listed as a graph input (models
    /// before IR version 4 list them all).
    fn overridable_initializers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let graph = &self.session.model().graph;
        graph
            .inputs
            .iter()
            .filter(|vi| graph.initializer(&vi.name).is_some())
            .map(|vi| node_arg(py, vi))
            .collect()
    }

    /// The model's metadata, with onnxruntime's `ModelMetadata` field names.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let model = self.session.model();
        let dict = PyDict::new(py);
        dict.set_item("producer_name", &model.producer_name)?;
        dict.set_item("producer_version", &model.producer_version)?;
        dict.set_item("graph_name", &model.graph.name)?;
        dict.set_item("domain", &model.domain)?;
        dict.set_item("description", &model.doc_string)?;
        dict.set_item("graph_description", &model.graph.doc_string)?;
        dict.set_item("version", model.model_version)?;
        let custom = PyDict::new(py);
        for (k, v) in &model.metadata_props {
            custom.set_item(k, v)?;
        }
        dict.set_item("custom_metadata_map", custom)?;
        let opsets = PyDict::new(py);
        for (domain, version) in &model.opset_imports {
            opsets.set_item(domain, version)?;
        }
        dict.set_item("opset_imports", opsets)?;
        dict.set_item("ir_version", model.ir_version)?;
        Ok(dict)
    }

    /// The number of threads the session's pool runs ops on.
    #[getter]
    fn threads(&self) -> usize {
        self.session.threads()
    }
}

fn node_arg<'py>(py: Python<'py>, vi: &ValueInfo) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            PyString::new(py, &vi.name).into_any(),
            PyString::new(py, &vi.ty.type_string()).into_any(),
            shape_of(py, &vi.ty)?.into_any(),
        ],
    )
}

/// A declared shape as onnxruntime reports it: ints for fixed dims, strings for named ones,
/// None for unknown ones; `[]` for an unknown rank and for sequences and maps; an optional's
/// element's shape.
fn shape_of<'py>(py: Python<'py>, ty: &ValueType) -> PyResult<Bound<'py, PyList>> {
    match ty {
        ValueType::Tensor(tt) | ValueType::SparseTensor(tt) => {
            let list = PyList::empty(py);
            for dim in tt.shape.iter().flatten() {
                match dim {
                    Dim::Fixed(n) => list.append(n)?,
                    Dim::Symbol(s) => list.append(s)?,
                    Dim::Unknown => list.append(py.None())?,
                }
            }
            Ok(list)
        }
        ValueType::Optional(elem) => shape_of(py, elem),
        _ => Ok(PyList::empty(py)),
    }
}
