//! `runnx convert-opset MODEL --to N -o OUT`: the model rewritten for another opset.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Convert a model to another opset of the default ONNX domain, up or down (like
/// onnx.version_converter).
///
/// Ops whose signature changed are rewritten (attributes that became inputs, such as the axes of
/// Squeeze, Unsqueeze and the Reduce ops, the shape of Reshape, the pads of Pad; Upsample to
/// Resize; Softmax's axis semantics); a node that the target opset cannot express (a computed
/// input that must become an attribute, an op that does not exist there) is refused with its
/// name and the reason.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  runnx convert-opset model.onnx --to 13 -o model.opset13.onnx")]
pub struct Args {
    model: PathBuf,
    /// The opset version to convert to.
    #[arg(long)]
    to: i64,
    /// Where to write the converted model.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn main(args: Args) -> Result<()> {
    let model =
        runnx_ir::load_model(&args.model).with_context(|| args.model.display().to_string())?;
    let from = model.opset("").unwrap_or(0);
    let converted = runnx_opset::convert_opset(&model, args.to)
        .with_context(|| args.model.display().to_string())?;
    runnx_onnx::save_model(&runnx_ir::convert::model_to_proto(&converted), &args.output)
        .with_context(|| args.output.display().to_string())?;
    println!(
        "{}: opset {from} -> {} ({} nodes); written to {}",
        args.model.display(),
        args.to,
        converted.graph.nodes.len(),
        args.output.display()
    );
    Ok(())
}
