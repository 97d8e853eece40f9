//! `runnx weights export|diff|patch`: a model's initializers against .npz, .safetensors or
//! torch.save files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use runnx_tools::numeric::Tolerance;
use runnx_tools::weights::{self, TensorStatus, WeightsFormat};

/// Export, diff or patch a model's weights (initializers).
#[derive(clap::Subcommand)]
pub enum Command {
    Export(ExportArgs),
    Diff(DiffArgs),
    Patch(PatchArgs),
}

/// Write the model's initializers to a .npz or .safetensors file (by its extension).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  runnx weights export model.onnx weights.safetensors")]
pub struct ExportArgs {
    model: PathBuf,
    /// OUT.npz or OUT.safetensors.
    out: PathBuf,
}

/// Compare the model's initializers with weights from the source framework.
///
/// WEIGHTS is a .npz, a .safetensors or a PyTorch state_dict saved with torch.save (read without
/// Python). A weight matches the initializer of the same name (`conv1.weight`), else the one
/// named by dropping leading `prefix.` parts (`module.conv1.weight`). Prints, per tensor, the
/// largest absolute and relative difference and the elements outside the tolerance; exits 1
/// when a matched tensor differs in value beyond --rtol/--atol, in shape or in type (with
/// --strict, also when a name is in only one of the two).
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  runnx weights diff exported.onnx model.pt --rtol 1e-5 --atol 1e-6"
)]
pub struct DiffArgs {
    model: PathBuf,
    weights: PathBuf,
    /// Relative tolerance: |model - weights| <= atol + rtol * |weights|.
    #[arg(long, default_value_t = 1e-5)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-8)]
    atol: f64,
    /// Also fail when a weight has no initializer or an initializer has no weight.
    #[arg(long)]
    strict: bool,
}

/// Replace the initializers that have a weight of the same name and write the model.
///
/// Names are kept; shapes must match; weights of another real type are converted to the
/// initializer's type. Nothing is written if any matched weight does not fit.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  runnx weights patch exported.onnx model.pt -o fixed.onnx")]
pub struct PatchArgs {
    model: PathBuf,
    weights: PathBuf,
    /// Where to write the patched model.
    #[arg(long, short = 'o')]
    output: PathBuf,
}

pub fn main(command: Command) -> Result<()> {
    match command {
        Command::Export(a) => export(a),
        Command::Diff(a) => diff(a),
        Command::Patch(a) => patch(a),
    }
}

fn load(path: &Path) -> Result<runnx_ir::Model> {
    runnx_ir::load_model(path).with_context(|| path.display().to_string())
}

fn format_name(f: WeightsFormat) -> &'static str {
    match f {
        WeightsFormat::Npz => "npz",
        WeightsFormat::Safetensors => "safetensors",
        WeightsFormat::Torch => "torch state_dict",
    }
}

fn export(a: ExportArgs) -> Result<()> {
    let model = load(&a.model)?;
    let tensors = weights::export_weights(&model);
    weights::write_weights(&a.out, &tensors)?;
    let elements: usize = tensors.iter().map(|(_, t)| t.len()).sum();
    println!(
        "wrote {} tensors ({elements} elements) to {}",
        tensors.len(),
        a.out.display()
    );
    Ok(())
}

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}

fn diff(a: DiffArgs) -> Result<()> {
    let model = load(&a.model)?;
    let (format, w) = weights::read_weights(&a.weights)?;
    let tol = Tolerance {
        rtol: a.rtol,
        atol: a.atol,
    };
    let d = weights::diff_weights(&model, &w, tol);
    let name_width = d
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{} vs {} ({}): rtol {:e}, atol {:e}",
        a.model.display(),
        a.weights.display(),
        format_name(format),
        a.rtol,
        a.atol
    );
    println!(
        "  {:name_width$}  {:>14}  {:>12}  {:>12}  {:>15}  status",
        "tensor", "shape", "max abs diff", "max rel diff", "outside"
    );
    for t in &d.tensors {
        let label = if t.weight != t.name {
            format!("{} (weight '{}')", t.name, t.weight)
        } else {
            String::new()
        };
        match &t.status {
            TensorStatus::Compared { closeness, dtypes } => {
                let model_shape = model
                    .graph
                    .initializer(&t.name)
                    .map(|x| shape(x.shape()))
                    .unwrap_or_default();
                let mut status = if closeness.passes() { "ok" } else { "DIFFERS" }.to_string();
                if let Some((m, w)) = dtypes {
                    status.push_str(&format!(" (model {m}, weights {w})"));
                }
                println!(
                    "  {:name_width$}  {:>14}  {:>12}  {:>12}  {:>15}  {status}{label}",
                    t.name,
                    model_shape,
                    super::sci(closeness.max_abs_diff),
                    super::sci(closeness.max_rel_diff),
                    format!("{}/{}", closeness.outside, closeness.total)
                );
            }
            TensorStatus::ShapeMismatch { model, weights } => println!(
                "  {:name_width$}  {:>14}  SHAPE MISMATCH: weights have {}{label}",
                t.name,
                shape(model),
                shape(weights)
            ),
            TensorStatus::TypeMismatch { model, weights } => println!(
                "  {:name_width$}  TYPE MISMATCH: model {model}, weights {weights}{label}",
                t.name
            ),
        }
    }
    if !d.missing_in_model.is_empty() {
        println!(
            "weights not in the model: {}",
            d.missing_in_model.join(", ")
        );
    }
    if !d.missing_in_weights.is_empty() {
        println!(
            "initializers not in the weights: {}",
            d.missing_in_weights.join(", ")
        );
    }
    let differing: Vec<&str> = d.differing().map(|t| t.name.as_str()).collect();
    println!(
        "{} matched, {} differ{}",
        d.tensors.len(),
        differing.len(),
        if differing.is_empty() {
            String::new()
        } else {
            format!(": {}", differing.join(", "))
        }
    );
    let unmatched = !d.missing_in_model.is_empty() || !d.missing_in_weights.is_empty();
    if !differing.is_empty() || (a.strict && unmatched) {
        std::process::exit(1);
    }
    Ok(())
}

fn patch(a: PatchArgs) -> Result<()> {
    let mut model = load(&a.model)?;
    let (_, w) = weights::read_weights(&a.weights)?;
    let report = weights::patch_weights(&mut model, &w)
        .with_context(|| format!("{} with {}", a.model.display(), a.weights.display()))?;
    if report.replaced.is_empty() && report.unchanged.is_empty() {
        bail!(
            "no weight of {} names an initializer of {}",
            a.weights.display(),
            a.model.display()
        );
    }
    runnx_onnx::save_model(&runnx_ir::convert::model_to_proto(&model), &a.output)
        .with_context(|| a.output.display().to_string())?;
    println!(
        "replaced {} initializer(s){}; {} already equal",
        report.replaced.len(),
        if report.replaced.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.replaced.join(", "))
        },
        report.unchanged.len()
    );
    if !report.missing_in_model.is_empty() {
        println!(
            "weights not in the model (ignored): {}",
            report.missing_in_model.join(", ")
        );
    }
    println!("wrote {}", a.output.display());
    Ok(())
}
