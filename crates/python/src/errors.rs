//! The exception classes `runnx` raises, named like onnxruntime's
//! (`onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument`...), and the mapping from
//! runtime errors to them.
//!
//! Every class derives from `RunnxError` (an `Exception`), and those with an obvious builtin
//! counterpart derive from it too, so `except ValueError` around a bad feed, or
//! `except FileNotFoundError` around a missing model, works as it reads.

use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyNotImplementedError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use runnx_onnx::FormatError;
use runnx_ops::OpError;
use runnx_runtime::RuntimeError;

/// One exception class, created when the module is first imported.
pub struct ExceptionClass {
    name: &'static str,
    doc: &'static str,
    cell: PyOnceLock<Py<PyType>>,
}

impl ExceptionClass {
    const fn new(name: &'static str, doc: &'static str) -> ExceptionClass {
        ExceptionClass {
            name,
            doc,
            cell: PyOnceLock::new(),
        }
    }

    /// An exception of this class with `message`. (The classes exist from module import on;
    /// should one not, the error is still raised, as a `RuntimeError`.)
    pub fn err(&self, message: impl Into<String>) -> PyErr {
        let message = message.into();
        Python::attach(|py| match self.cell.get(py) {
            Some(class) => PyErr::from_type(class.bind(py).clone(), message),
            None => PyRuntimeError::new_err(message),
        })
    }
}

/// The base of every exception runnx raises.
pub static RUNNX_ERROR: ExceptionClass =
    ExceptionClass::new("RunnxError", "Base class of the exceptions runnx raises.");
/// A failure while running a node (onnxruntime's `FAIL`).
pub static FAIL: ExceptionClass = ExceptionClass::new(
    "Fail",
    "Running the model failed (a node reported an error).",
);
/// A bad feed or output name (onnxruntime's `INVALID_ARGUMENT`). Also a `ValueError`.
pub static INVALID_ARGUMENT: ExceptionClass = ExceptionClass::new(
    "InvalidArgument",
    "An input or output name, element type, rank or shape the model does not accept.",
);
/// The model file does not exist. Also a `FileNotFoundError`.
pub static NO_SUCH_FILE: ExceptionClass =
    ExceptionClass::new("NoSuchFile", "The model file does not exist.");
/// The bytes are not an ONNX model.
pub static INVALID_PROTOBUF: ExceptionClass = ExceptionClass::new(
    "InvalidProtobuf",
    "The file or bytes are not a valid ONNX model.",
);
/// The model is well-formed protobuf but not a valid graph (bad types, cycles, bad attributes).
pub static INVALID_GRAPH: ExceptionClass = ExceptionClass::new(
    "InvalidGraph",
    "The model's graph is invalid or cannot be planned.",
);
/// An op, attribute value or type runnx does not implement. Also a `NotImplementedError`.
pub static NOT_IMPLEMENTED: ExceptionClass = ExceptionClass::new(
    "NotImplemented",
    "The model uses something runnx does not implement.",
);
/// Anything else (onnxruntime's `RUNTIME_EXCEPTION`). Also a `RuntimeError`.
pub static RUNTIME_EXCEPTION: ExceptionClass =
    ExceptionClass::new("RuntimeException", "An unexpected error inside runnx.");

/// Creates the classes and adds them to `module`.
pub fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let exception = py.get_type::<PyException>();
    let base = create(module, &RUNNX_ERROR, &[exception])?;
    let classes: [(&ExceptionClass, Option<Bound<'_, PyType>>); 7] = [
        (&FAIL, None),
        (&INVALID_ARGUMENT, Some(py.get_type::<PyValueError>())),
        (&NO_SUCH_FILE, Some(py.get_type::<PyFileNotFoundError>())),
        (&INVALID_PROTOBUF, None),
        (&INVALID_GRAPH, None),
        (
            &NOT_IMPLEMENTED,
            Some(py.get_type::<PyNotImplementedError>()),
        ),
        (&RUNTIME_EXCEPTION, Some(py.get_type::<PyRuntimeError>())),
    ];
    for (class, builtin) in classes {
        let mut bases = vec![base.clone()];
        bases.extend(builtin);
        create(module, class, &bases)?;
    }
    Ok(())
}

fn create<'py>(
    module: &Bound<'py, PyModule>,
    class: &ExceptionClass,
    bases: &[Bound<'py, PyType>],
) -> PyResult<Bound<'py, PyType>> {
    let py = module.py();
    let namespace = PyDict::new(py);
    namespace.set_item("__doc__", class.doc)?;
    namespace.set_item("__module__", "runnx")?;
    // `type(name, bases, namespace)`: pyo3's `create_exception!` takes a single base.
    let ty = py
        .get_type::<PyType>()
        .call1((class.name, PyTuple::new(py, bases)?, namespace))?
        .cast_into::<PyType>()?;
    let _ = class.cell.set(py, ty.clone().unbind());
    module.add(class.name, &ty)?;
    Ok(ty)
}

/// The exception for an error creating a session; the message names `source` (the model path)
/// when the runtime's message does not already.
pub fn load_error(err: RuntimeError, source: &str) -> PyErr {
    let message = err.to_string();
    let message = if message.contains(source) {
        message
    } else {
        format!("{source}: {message}")
    };
    let class = match &err {
        RuntimeError::Format(e) => format_class(e),
        RuntimeError::Ir(runnx_ir::IrError::Format(e)) => format_class(e),
        RuntimeError::Node {
            source: OpError::Unsupported(_),
            ..
        } => &NOT_IMPLEMENTED,
        RuntimeError::Ir(_) | RuntimeError::Node { .. } | RuntimeError::Model(_) => &INVALID_GRAPH,
        RuntimeError::Input(_) => &INVALID_ARGUMENT,
    };
    class.err(message)
}

fn format_class(err: &FormatError) -> &'static ExceptionClass {
    match err {
        FormatError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            &NO_SUCH_FILE
        }
        FormatError::Io { .. } => &RUNTIME_EXCEPTION,
        _ => &INVALID_PROTOBUF,
    }
}

/// The exception for an error running a session.
pub fn run_error(err: RuntimeError) -> PyErr {
    let class = match &err {
        RuntimeError::Input(_) => &INVALID_ARGUMENT,
        RuntimeError::Node {
            source: OpError::Unsupported(_),
            ..
        } => &NOT_IMPLEMENTED,
        _ => &FAIL,
    };
    class.err(err.to_string())
}
