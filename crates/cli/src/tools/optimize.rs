//! `runnx optimize MODEL -o OUT`: the engine's graph optimizations, saved as a model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use runnx_runtime::optimize_model;

use crate::bench::Level;

/// Optimize a model and save it: constant folding, Identity removal, shape folding (computed shapes of static
/// tensors become constants), Conv+BatchNormalization folding, dead nodes and unused
/// initializers removed.
///
/// At the default level (basic) the result uses standard ONNX ops only, so any runtime loads it.
/// `extended` and `all` also fuse Conv with its residual Add and activation into
/// com.microsoft.FusedConv (which onnxruntime also runs).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  runnx optimize model.onnx -o model.opt.onnx")]
pub struct Args {
    model: PathBuf,
    /// Where to write the optimized model.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "basic")]
    level: Level,
}

pub fn main(args: Args) -> Result<()> {
    let mut model =
        runnx_ir::load_model(&args.model).with_context(|| args.model.display().to_string())?;
    let before = Stats::of(&model);
    let spinner = crate::progress::spinner(format!("optimizing {}", args.model.display()));
    let counts = optimize_model(&mut model, args.level.into())
        .with_context(|| args.model.display().to_string())?;
    drop(spinner);
    runnx_onnx::save_model(&runnx_ir::convert::model_to_proto(&model), &args.output)
        .with_context(|| args.output.display().to_string())?;
    let after = Stats::of(&model);
    println!(
        "{}: {} -> {} nodes, {} -> {} initializers ({} -> {} bytes of weights)",
        args.model.display(),
        before.nodes,
        after.nodes,
        before.initializers,
        after.initializers,
        before.bytes,
        after.bytes
    );
    println!(
        "  {} nodes constant-folded, {} computed shapes folded, {} Identity nodes bypassed, {} dead nodes removed; written to {}",
        counts.folded_nodes,
        counts.folded_shapes,
        counts.bypassed_identities,
        counts.dead_nodes,
        args.output.display()
    );
    Ok(())
}

struct Stats {
    nodes: usize,
    initializers: usize,
    bytes: usize,
}

impl Stats {
    fn of(model: &runnx_ir::Model) -> Stats {
        Stats {
            nodes: model.graph.nodes.len(),
            initializers: model.graph.initializers.len(),
            bytes: model
                .graph
                .initializers
                .iter()
                .map(|(_, t)| (t.len() * t.dtype().bit_width()).div_ceil(8))
                .sum(),
        }
    }
}
