//! `runnx run`: run a model once on inputs from files.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use runnx_ir::{Tensor, TensorData, Value};
use runnx_runtime::{Session, SessionOptions};

use crate::inputs::{load_inputs, parse_input_arg, InputArg};

/// Run a model on inputs from .npy, .npz or .pb files; write outputs as .npz or summarise them.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  runnx run tests/fixtures/mnist_mlp.onnx --input tests/fixtures/mnist_mlp.inputs.npz\n  runnx run model.onnx --input input_ids=ids.npy --input attention_mask=mask.npy --output out.npz\n  runnx run model.onnx --input x.pb --output-names logits"
)]
pub struct Args {
    /// The .onnx file.
    model: PathBuf,
    /// NAME=FILE (.npy, .npz or TensorProto .pb), or a .npz FILE whose keys are input names.
    #[arg(long = "input", short = 'i', value_parser = parse_input_arg)]
    inputs: Vec<InputArg>,
    /// Write the outputs to this .npz file, keyed by output name.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Comma-separated outputs to compute (default: all). Only what they need is run.
    #[arg(long, value_delimiter = ',')]
    output_names: Vec<String>,
    /// Intra-op threads (0: every core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn main(args: Args) -> Result<()> {
    let options = SessionOptions {
        intra_op_threads: args.threads,
        ..Default::default()
    };
    let session = Session::from_file(&args.model, &options)
        .with_context(|| args.model.display().to_string())?;
    let declared: Vec<_> = session.inputs().cloned().collect();
    let mut values = load_inputs(&args.inputs, &declared)?;
    // A misspelt name shows up both as an unknown and as a missing input: name the unknown one.
    if let Some(extra) = values
        .keys()
        .find(|k| !declared.iter().any(|d| &d.name == *k))
    {
        let names: Vec<&str> = declared.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "{}: '{extra}' is not an input of the model (inputs: {})",
            args.model.display(),
            names.join(", ")
        );
    }
    let mut feeds = Vec::new();
    for input in &declared {
        match values.remove(&input.name) {
            Some(v) => feeds.push((input.name.clone(), v)),
            None => bail!(
                "{}: no value for input '{}' ({}); give it with --input {}=FILE",
                args.model.display(),
                input.name,
                input.ty,
                input.name
            ),
        }
    }
    let names: Vec<String> = if args.output_names.is_empty() {
        session.outputs().map(|o| o.name.clone()).collect()
    } else {
        args.output_names.clone()
    };
    let outputs = session
        .run(feeds, Some(&names))
        .with_context(|| args.model.display().to_string())?;
    match &args.output {
        Some(path) => {
            let mut tensors = Vec::new();
            for (name, value) in names.iter().zip(outputs) {
                match value {
                    Value::Tensor(t) => tensors.push((name.clone(), t)),
                    other => bail!(
                        "output '{name}' is a {}; only tensors can be written to .npz",
                        other.describe()
                    ),
                }
            }
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            runnx_ir::npy::write_npz(std::io::BufWriter::new(file), &tensors)
                .with_context(|| path.display().to_string())?;
            eprintln!("wrote {} output(s) to {}", tensors.len(), path.display());
        }
        None => {
            for (name, value) in names.iter().zip(&outputs) {
                println!("{name}: {}", summarize(value));
            }
        }
    }
    Ok(())
}

/// `float[1,10] min -2.1 max 3.4 mean 0.12 argmax 7: [0.01, 0.2, ...]`
fn summarize(value: &Value) -> String {
    let Value::Tensor(t) = value else {
        return value.describe();
    };
    let head = format!("{}{:?}", t.dtype(), t.shape());
    match as_f64(t) {
        Some(v) if !v.is_empty() => {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let argmax = v
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            let shown: Vec<String> = v.iter().take(10).map(|x| format!("{x:.6}")).collect();
            let more = if v.len() > 10 { ", ..." } else { "" };
            format!(
                "{head} min {min:.6} max {max:.6} mean {mean:.6} argmax {argmax}: [{}{more}]",
                shown.join(", ")
            )
        }
        _ => {
            let shown: Vec<String> = (0..t.len().min(10))
                .map(|i| format!("{:?}", t.data().gather(&[i])))
                .collect();
            format!("{head}: {}", shown.join(" "))
        }
    }
}

fn as_f64(t: &Tensor) -> Option<Vec<f64>> {
    Some(match t.data() {
        TensorData::Float(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Double(v) => v.clone(),
        TensorData::Float16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Bfloat16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| x as f64).collect(),
        _ => return None,
    })
}
