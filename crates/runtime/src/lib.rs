//! Sessions: a model planned once, then run many times.
//!
//! Creating a [`Session`] loads the IR, inlines model-local functions, orders the nodes, looks
//! up and builds each node's kernel (attributes parsed, constant inputs visible), folds nodes
//! whose inputs are all constants, and assigns every value a slot. Running it fills the slots
//! with the feeds, executes only the steps the requested outputs need, and drops each
//! intermediate after its last use.
//!
//! The runtime knows about ops only through `runnx_ops::Registry`; it knows nothing about the
//! CLI or Python.

mod error;
mod inline;
mod optimize;
mod plan;
mod session;
mod threads;

pub use error::RuntimeError;
pub use optimize::{optimize_model, FoldCounts};
pub use plan::StepProfile;
pub use session::{OptimizationLevel, Session, SessionOptions};
