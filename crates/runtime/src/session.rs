//! The public entry point: create a session from a file or bytes, inspect its inputs and
//! outputs, run it.

use std::collections::HashSet;
use std::path::Path;

use runnx_ir::{Dim, Model, Value, ValueInfo, ValueType};

use crate::plan::{GraphPlan, PlanContext, StepProfile};
use crate::threads::Threads;
use crate::RuntimeError;

/// Graph optimization levels, as in onnxruntime.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum OptimizationLevel {
    Disabled,
    /// Constant folding and dead-code removal.
    Basic,
    Extended,
    #[default]
    All,
}

#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Threads for intra-op parallelism; 0 uses every core.
    pub intra_op_threads: usize,
    pub optimization_level: OptimizationLevel,
    /// Where to save the graph as optimized (a valid ONNX model), like onnxruntime's
    /// `SessionOptions.optimized_model_filepath`. Constants the planner folds are not in it.
    pub optimized_model_path: Option<std::path::PathBuf>,
}

/// A model planned for execution. `run` may be called from several threads at once.
pub struct Session {
    model: Model,
    plan: GraphPlan,
    threads: Threads,
}

impl Session {
    pub fn from_file(path: &Path, options: &SessionOptions) -> Result<Session, RuntimeError> {
        let loaded = runnx_onnx::load_model(path)?;
        let model = runnx_ir::convert::model_from_proto(&loaded)
            .map_err(|e| RuntimeError::Model(format!("{}: {e}", path.display())))?;
        Session::from_model(model, options)
    }

    pub fn from_bytes(
        bytes: impl Into<bytes::Bytes>,
        options: &SessionOptions,
    ) -> Result<Session, RuntimeError> {
        let loaded = runnx_onnx::LoadedModel::from_bytes(bytes.into())?;
        let model = runnx_ir::convert::model_from_proto(&loaded)?;
        Session::from_model(model, options)
    }

    pub fn from_model(model: Model, options: &SessionOptions) -> Result<Session, RuntimeError> {
        let threads = if options.intra_op_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.intra_op_threads
        };
        let threads = Threads::new(threads);
        let mut model = model;
        crate::optimize::optimize(&mut model, options.optimization_level);
        if let Some(path) = &options.optimized_model_path {
            runnx_onnx::save_model(&runnx_ir::convert::model_to_proto(&model), path).map_err(
                |e| RuntimeError::Model(format!("cannot save the optimized model: {e}")),
            )?;
        }
        crate::optimize::optimize_for_engine(&mut model, options.optimization_level);
        let ctx = PlanContext {
            registry: runnx_ops::registry(),
            opsets: &model.opset_imports,
            functions: &model.functions,
            fold_constants: options.optimization_level >= OptimizationLevel::Basic,
        };
        let plan = threads
            .run(|| GraphPlan::build(&model.graph, &ctx, &HashSet::new()))
            .map_err(RuntimeError::Model)??;
        // The plan holds what it needs; keep metadata, signatures and initializers list for
        // inspection but not the node bodies twice.
        model.graph.nodes.clear();
        Ok(Session {
            model,
            plan,
            threads,
        })
    }

    /// The inputs a caller feeds (graph inputs that are not initializers), in graph order.
    pub fn inputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.plan.inputs.iter().map(|(vi, _)| vi)
    }

    pub fn outputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.plan.outputs.iter().map(|(vi, _)| vi)
    }

    /// Model metadata (producer, opsets, doc string, metadata_props). Its graph has no nodes.
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn threads(&self) -> usize {
        self.threads.count()
    }

    /// Runs the model. `feeds` name every input; `output_names` selects outputs (all when
    /// `None`) and only what they need is computed. Outputs come back in the requested order.
    pub fn run(
        &self,
        feeds: Vec<(String, Value)>,
        output_names: Option<&[String]>,
    ) -> Result<Vec<Value>, RuntimeError> {
        self.run_inner(feeds, output_names, None)
    }

    /// As [`Session::run`], and also returns the time each top-level node took, in execution
    /// order (nodes inside If/Loop/Scan bodies count in their parent's time).
    pub fn run_profiled(
        &self,
        feeds: Vec<(String, Value)>,
        output_names: Option<&[String]>,
    ) -> Result<(Vec<Value>, Vec<StepProfile>), RuntimeError> {
        let mut records = Vec::with_capacity(self.plan.num_steps());
        let outputs = self.run_inner(feeds, output_names, Some(&mut records))?;
        Ok((outputs, records))
    }

    fn run_inner(
        &self,
        feeds: Vec<(String, Value)>,
        output_names: Option<&[String]>,
        profile: Option<&mut Vec<StepProfile>>,
    ) -> Result<Vec<Value>, RuntimeError> {
        let mut slots = Vec::with_capacity(feeds.len());
        let mut seen = HashSet::new();
        for (name, value) in feeds {
            let Some((info, slot)) = self.plan.inputs.iter().find(|(vi, _)| vi.name == name) else {
                let expected: Vec<&str> = self.inputs().map(|v| v.name.as_str()).collect();
                return Err(RuntimeError::Input(format!(
                    "unknown input name '{name}'; the model's inputs are: {}",
                    expected.join(", ")
                )));
            };
            check_feed(info, &value)?;
            if !seen.insert(*slot) {
                return Err(RuntimeError::Input(format!("input '{name}' is fed twice")));
            }
            slots.push((*slot, value));
        }
        let missing: Vec<&str> = self
            .plan
            .inputs
            .iter()
            .filter(|(vi, s)| !seen.contains(s) && !matches!(vi.ty, ValueType::Optional(_)))
            .map(|(vi, _)| vi.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(RuntimeError::Input(format!(
                "missing input(s): {}",
                missing.join(", ")
            )));
        }
        let wanted: Vec<usize> = match output_names {
            None => self.plan.output_slots(),
            Some(names) => names
                .iter()
                .map(|n| {
                    self.plan
                        .outputs
                        .iter()
                        .find(|(vi, _)| &vi.name == n)
                        .map(|(_, s)| *s)
                        .ok_or_else(|| {
                            let known: Vec<&str> =
                                self.outputs().map(|v| v.name.as_str()).collect();
                            RuntimeError::Input(format!(
                                "unknown output name '{n}'; the model's outputs are: {}",
                                known.join(", ")
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        self.threads
            .run(|| self.plan.execute(slots, &[], &wanted, profile))
            .map_err(RuntimeError::Model)?
    }
}

/// Checks a fed value against the declared input type: element type, rank and fixed dims.
fn check_feed(info: &ValueInfo, value: &Value) -> Result<(), RuntimeError> {
    let name = &info.name;
    let tensor_type = match (&info.ty, value) {
        (ValueType::Tensor(tt), Value::Tensor(_)) => tt,
        (ValueType::Tensor(tt), other) => {
            return Err(RuntimeError::Input(format!(
                "input '{name}' expects a tensor of {}, got {}",
                tt.dtype,
                other.describe()
            )))
        }
        _ => return Ok(()),
    };
    let Value::Tensor(t) = value else {
        unreachable!()
    };
    if t.dtype() != tensor_type.dtype {
        return Err(RuntimeError::Input(format!(
            "input '{name}' expects element type {} (tensor({})), got {}",
            tensor_type.dtype,
            tensor_type.dtype,
            t.dtype()
        )));
    }
    if let Some(dims) = &tensor_type.shape {
        let expected: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        if dims.len() != t.rank() {
            return Err(RuntimeError::Input(format!(
                "input '{name}' expects rank {} (shape [{}]), got rank {} (shape {:?})",
                dims.len(),
                expected.join(", "),
                t.rank(),
                t.shape()
            )));
        }
        for (axis, (d, &actual)) in dims.iter().zip(t.shape()).enumerate() {
            if let Dim::Fixed(n) = d {
                if *n != actual {
                    return Err(RuntimeError::Input(format!(
                        "input '{name}' expects shape [{}], got {:?} (dimension {axis} must be {n})",
                        expected.join(", "),
                        t.shape()
                    )));
                }
            }
        }
    }
    Ok(())
}
