//! `runnx inspect`: what a model is, without running it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use runnx_ir::{Model, ValueInfo, ValueType};
use serde_json::json;

/// Show a model's producer, opsets, inputs and outputs, op histogram and parameter size.
///
/// Example: runnx inspect model.onnx --json
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  runnx inspect tests/fixtures/mnist_mlp.onnx\n  runnx inspect --shapes tests/fixtures/bert_tiny.onnx\n  runnx inspect model.onnx --json | jq .inputs"
)]
pub struct Args {
    /// The .onnx file.
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also list every intermediate value with its inferred type and shape.
    #[arg(long)]
    shapes: bool,
}

pub fn main(args: Args) -> Result<()> {
    let model =
        runnx_ir::load_model(&args.model).with_context(|| format!("{}", args.model.display()))?;
    let summary = Summary::of(&model);
    let values = if args.shapes {
        Some(inferred_values(&model))
    } else {
        None
    };
    if args.json {
        let mut doc = summary.to_json(&model);
        if let Some(values) = &values {
            doc["values"] = values
                .iter()
                .map(|v| {
                    json!({"name": v.name, "op": v.op, "type": v.ty.type_string(), "shape": shape_json(&v.ty)})
                })
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        summary.print(&model, &args.model);
        if let Some(values) = &values {
            let width = values
                .iter()
                .map(|v| v.name.len())
                .max()
                .unwrap_or(0)
                .min(48);
            println!(
                "\nvalues ({}, by the node that produces them)",
                values.len()
            );
            for v in values {
                let ty = if v.ty == ValueType::Unknown {
                    "?".to_string()
                } else {
                    v.ty.to_string()
                };
                println!("  {:<width$} {:<20} {ty}", v.name, v.op);
            }
        }
    }
    Ok(())
}

/// One node output with its inferred type.
struct InferredValue {
    name: String,
    op: String,
    ty: ValueType,
}

fn inferred_values(model: &Model) -> Vec<InferredValue> {
    let inference = match runnx_shapes::infer(model, &runnx_shapes::InferOptions::default()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("warning: shape inference: {e}");
            return Vec::new();
        }
    };
    for p in &inference.problems {
        eprintln!("warning: {p}");
    }
    let producer: BTreeMap<&str, &str> = model
        .graph
        .nodes
        .iter()
        .flat_map(|n| {
            n.outputs
                .iter()
                .map(move |o| (o.as_str(), n.op_type.as_str()))
        })
        .collect();
    inference
        .values
        .into_iter()
        .map(|(name, ty)| InferredValue {
            op: producer.get(name.as_str()).unwrap_or(&"").to_string(),
            name,
            ty,
        })
        .collect()
}

/// A tensor type's shape as JSON: numbers, dimension names and null for unknown sizes.
fn shape_json(ty: &ValueType) -> serde_json::Value {
    match ty.as_tensor().and_then(|t| t.shape.as_ref()) {
        None => serde_json::Value::Null,
        Some(dims) => dims
            .iter()
            .map(|d| match d {
                runnx_ir::Dim::Fixed(n) => json!(n),
                runnx_ir::Dim::Symbol(s) => json!(s),
                runnx_ir::Dim::Unknown => serde_json::Value::Null,
            })
            .collect(),
    }
}

struct Summary {
    ops: BTreeMap<String, usize>,
    parameters: usize,
    parameter_bytes: usize,
}

impl Summary {
    fn of(model: &Model) -> Summary {
        let mut ops = BTreeMap::new();
        count_ops(&model.graph, &mut ops);
        let mut parameters = 0;
        let mut parameter_bytes = 0;
        for (_, t) in &model.graph.initializers {
            parameters += t.len();
            parameter_bytes += (t.len() * t.dtype().bit_width()).div_ceil(8);
        }
        Summary {
            ops,
            parameters,
            parameter_bytes,
        }
    }

    fn print(&self, model: &Model, path: &std::path::Path) {
        println!("model      {}", path.display());
        let producer = format!("{} {}", model.producer_name, model.producer_version);
        println!("producer   {}", producer.trim());
        println!("ir version {}", model.ir_version);
        let opsets: Vec<String> = model
            .opset_imports
            .iter()
            .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        println!("opsets     {}", opsets.join(", "));
        if !model.doc_string.is_empty() {
            println!(
                "doc        {}",
                model.doc_string.lines().next().unwrap_or("")
            );
        }
        for (k, v) in &model.metadata_props {
            println!("metadata   {k} = {v}");
        }
        println!("\ninputs");
        for vi in model.graph.feed_inputs() {
            println!("  {:<24} {}", vi.name, vi.ty);
        }
        println!("outputs");
        for vi in &model.graph.outputs {
            println!("  {:<24} {}", vi.name, vi.ty);
        }
        let nodes: usize = self.ops.values().sum();
        println!("\nops ({nodes} nodes)");
        let mut by_count: Vec<_> = self.ops.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in by_count {
            println!("  {op:<24} {n}");
        }
        println!(
            "\nparameters {} in {} initializers, {}",
            self.parameters,
            model.graph.initializers.len(),
            human_bytes(self.parameter_bytes)
        );
    }

    fn to_json(&self, model: &Model) -> serde_json::Value {
        let io = |vi: &ValueInfo| json!({"name": vi.name, "type": vi.ty.type_string(), "shape": shape_json(&vi.ty)});
        json!({
            "producer_name": model.producer_name,
            "producer_version": model.producer_version,
            "ir_version": model.ir_version,
            "opset_imports": model.opset_imports,
            "doc_string": model.doc_string,
            "metadata_props": model.metadata_props.iter().cloned().collect::<BTreeMap<_, _>>(),
            "inputs": model.graph.feed_inputs().map(io).collect::<Vec<_>>(),
            "outputs": model.graph.outputs.iter().map(io).collect::<Vec<_>>(),
            "ops": self.ops,
            "nodes": self.ops.values().sum::<usize>(),
            "initializers": model.graph.initializers.len(),
            "parameters": self.parameters,
            "parameter_bytes": self.parameter_bytes,
        })
    }
}

/// Counts ops in a graph and its subgraphs.
fn count_ops(graph: &runnx_ir::Graph, ops: &mut BTreeMap<String, usize>) {
    for node in &graph.nodes {
        let name = if node.domain.is_empty() || node.domain == "ai.onnx" {
            node.op_type.clone()
        } else {
            format!("{}.{}", node.domain, node.op_type)
        };
        *ops.entry(name).or_default() += 1;
        for a in &node.attributes {
            match &a.value {
                runnx_ir::AttributeValue::Graph(g) => count_ops(g, ops),
                runnx_ir::AttributeValue::Graphs(gs) => gs.iter().for_each(|g| count_ops(g, ops)),
                _ => {}
            }
        }
    }
}

fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
