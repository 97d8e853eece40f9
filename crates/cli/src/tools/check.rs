//! `runnx check MODEL`: the model's validity, like onnx.checker.check_model(full_check=True).

use std::path::PathBuf;

use anyhow::{Context, Result};
use runnx_tools::check::{self, Severity};

/// Check that a model is valid ONNX: IR and opset versions, topological order and single
/// assignment, ops and attributes against the op schemas, initializer data, value_info.
///
/// Prints one line per problem, naming the node, op, initializer or value involved, and exits 1
/// when there is any error (warnings, such as an op runnx has no kernel for, do not fail).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  runnx check model.onnx")]
pub struct Args {
    model: PathBuf,
    /// Also fail on warnings.
    #[arg(long)]
    strict: bool,
}

pub fn main(args: Args) -> Result<()> {
    let loaded =
        runnx_onnx::load_model(&args.model).with_context(|| args.model.display().to_string())?;
    let problems = check::check_model(&loaded);
    for p in &problems {
        println!("{p}");
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    if errors == 0 && warnings == 0 {
        println!("{}: valid", args.model.display());
    } else {
        println!(
            "{}: {errors} error(s), {warnings} warning(s)",
            args.model.display()
        );
    }
    if errors > 0 || (args.strict && warnings > 0) {
        std::process::exit(1);
    }
    Ok(())
}
