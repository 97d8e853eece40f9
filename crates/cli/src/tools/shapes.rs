//! `runnx infer-shapes MODEL -o OUT`: the model with every inferred type and shape written as
//! value_info, like onnx.shape_inference.infer_shapes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use runnx_ir::ValueType;
use runnx_shapes::InferOptions;
use runnx_tools::shapes::infer_into;

/// Infer the type and shape of every value and save them in the model as value_info.
///
/// Named dimensions (`batch`) are kept symbolic, and shapes computed inside the graph
/// (Shape -> Gather -> Concat -> Reshape) are followed to sizes. Everything else in the file
/// (initializers, metadata, existing value_info of other values) is kept as it was.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  runnx infer-shapes model.onnx -o model.shapes.onnx\n  runnx inspect --shapes model.onnx   # the same, listed instead of saved"
)]
pub struct Args {
    model: PathBuf,
    /// Where to write the model with shapes.
    #[arg(short, long)]
    output: PathBuf,
    /// Fail on the first invalid node, type conflict or op without a shape rule.
    #[arg(long)]
    strict: bool,
}

pub fn main(args: Args) -> Result<()> {
    let mut loaded =
        runnx_onnx::load_model(&args.model).with_context(|| args.model.display().to_string())?;
    let options = InferOptions {
        strict: args.strict,
    };
    let inference =
        infer_into(&mut loaded, &options).with_context(|| args.model.display().to_string())?;
    runnx_onnx::save_model(&loaded.proto, &args.output)
        .with_context(|| args.output.display().to_string())?;

    let total = inference.values.len();
    let typed = inference
        .values
        .iter()
        .filter(|(_, t)| *t != ValueType::Unknown)
        .count();
    let static_shapes = inference
        .values
        .iter()
        .filter(|(_, t)| {
            t.as_tensor()
                .and_then(|t| t.shape.as_ref())
                .is_some_and(|s| s.iter().all(|d| matches!(d, runnx_ir::Dim::Fixed(_))))
        })
        .count();
    for p in &inference.problems {
        eprintln!("warning: {p}");
    }
    if !inference.ops_without_rule.is_empty() {
        let ops: Vec<&str> = inference
            .ops_without_rule
            .iter()
            .map(String::as_str)
            .collect();
        eprintln!("warning: no shape rule for {}", ops.join(", "));
    }
    println!(
        "{}: {typed} of {total} values typed, {static_shapes} with fully static shapes; written to {}",
        args.model.display(),
        args.output.display()
    );
    Ok(())
}
