//! ONNX operators.
//!
//! The contract, on one screen:
//! - An op is registered as an [`OpDef`]: domain, name, the first opset version its semantics
//!   apply to, and a `build` function.
//! - `build` runs once per node when a session is created. It parses and validates the node's
//!   attributes, may look at constant inputs (to prepack weights later), and returns a [`Kernel`].
//! - [`Kernel::run`] computes the outputs from the inputs. It receives the inputs by value so a
//!   kernel holding the last reference to a buffer can reuse it.
//!
//! Ops never see protobuf and never know about sessions: the runtime hands them IR nodes and
//! values. Threads come from the rayon pool the runtime installs around a run.

mod context;
mod error;
pub mod kernels;
mod ops;
mod registry;

pub use context::{
    captured_positions, implicit_input_names, Inputs, NodeInfo, Subgraph, SubgraphCompiler,
};
pub use error::OpError;
pub use registry::{OpDef, Registry};

use runnx_ir::Value;

/// The domain of the ops only runnx runs: what its session optimizer makes of standard nodes
/// for its own kernels (`FusedConvMaxPool`). They never appear in a model runnx saves.
pub const RUNNX_DOMAIN: &str = "ai.runnx";

/// A node's computation, built once per session.
pub trait Kernel: Send + Sync {
    /// Computes the node's outputs, one per declared output (trailing optional outputs the node
    /// does not name may be omitted).
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError>;
}

/// The registry of every op this crate implements.
pub fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut reg = Registry::default();
        ops::register_all(&mut reg);
        reg
    })
}
