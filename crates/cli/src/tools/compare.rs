//! `runnx compare A B`: two models, or a model and reference outputs, on the same inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use runnx_ir::{Model, Value};
use runnx_runtime::{Session, SessionOptions};
use runnx_tools::compare::{self, DiffStatus, ValueDiff};
use runnx_tools::numeric::Tolerance;

use crate::inputs::{
    concrete_shape, load_inputs, parse_dim, parse_input_arg, parse_range, random_input, InputArg,
    Rng,
};

/// Compare the outputs of two models, or of a model and reference outputs (.npz), on the same
/// inputs.
///
/// Inputs come from --input, else (when B is a .npz) from B's arrays named like A's inputs,
/// else they are random (--seed, --dim, --range). For each output: largest absolute and
/// relative difference, elements outside |a - b| <= atol + rtol * |b| (B is the reference),
/// pass or FAIL. Exits 1 when any output fails. --per-node exposes every intermediate value of
/// both models and reports the first node of A whose output differs from B's value of the same
/// name.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  runnx compare exported.onnx reference.npz\n  runnx compare model.onnx model_fp16.onnx --seed 1 --rtol 1e-2 --atol 1e-3\n  runnx compare drifted.onnx good.onnx -i input=x.npy --per-node"
)]
pub struct Args {
    /// The model under test.
    a: PathBuf,
    /// The reference: a model, or a .npz of expected outputs keyed by output name.
    b: PathBuf,
    /// NAME=FILE (.npy, .npz or .pb), or a .npz FILE whose keys are input names.
    #[arg(long = "input", short = 'i', value_parser = parse_input_arg)]
    inputs: Vec<InputArg>,
    /// Seed of random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// NAME=VALUE size of a symbolic dimension of random inputs (others: 1).
    #[arg(long = "dim", value_parser = parse_dim)]
    dims: Vec<(String, usize)>,
    /// NAME=LO:HI value range of a random input (integers default to [0, 100), floats to [-1, 1)).
    #[arg(long = "range", value_parser = parse_range)]
    ranges: Vec<(String, (f64, f64))>,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Find the first node whose output diverges (B must be a model).
    #[arg(long)]
    per_node: bool,
}

fn load(path: &Path) -> Result<Model> {
    runnx_ir::load_model(path).with_context(|| path.display().to_string())
}

fn read_npz(path: &Path) -> Result<Vec<(String, runnx_ir::Tensor)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    runnx_ir::npy::read_npz(std::io::BufReader::new(file))
        .with_context(|| path.display().to_string())
}

fn run(model: Model, feeds: &[(String, Value)], path: &Path) -> Result<Vec<(String, Value)>> {
    let _spinner = crate::progress::spinner(format!("running {}", path.display()));
    let session = Session::from_model(model, &SessionOptions::default())
        .with_context(|| path.display().to_string())?;
    let names: Vec<String> = session.outputs().map(|o| o.name.clone()).collect();
    let wanted: Vec<(String, Value)> = session
        .inputs()
        .filter_map(|i| feeds.iter().find(|(n, _)| *n == i.name).cloned())
        .collect();
    let values = session
        .run(wanted, Some(&names))
        .with_context(|| path.display().to_string())?;
    Ok(names.into_iter().zip(values).collect())
}

pub fn main(args: Args) -> Result<()> {
    let tol = Tolerance {
        rtol: args.rtol,
        atol: args.atol,
    };
    let mut model_a = load(&args.a)?;
    let b_is_npz = args.b.extension().is_some_and(|e| e == "npz");
    let reference_npz = if b_is_npz {
        Some(read_npz(&args.b)?)
    } else {
        None
    };
    if args.per_node && b_is_npz {
        bail!("--per-node needs B to be a model, not reference outputs");
    }
    let declared: Vec<_> = model_a.graph.feed_inputs().cloned().collect();
    let mut given = load_inputs(&args.inputs, &declared)?;
    if let Some(reference) = &reference_npz {
        for (name, t) in reference {
            if declared.iter().any(|d| &d.name == name) && !given.contains_key(name) {
                given.insert(name.clone(), Value::Tensor(t.clone()));
            }
        }
    }
    let dims: HashMap<String, usize> = args.dims.iter().cloned().collect();
    let ranges: HashMap<String, (f64, f64)> = args.ranges.iter().cloned().collect();
    let mut rng = Rng::new(args.seed);
    let mut feeds = Vec::new();
    let mut random = Vec::new();
    for input in &declared {
        if let Some(v) = given.remove(&input.name) {
            feeds.push((input.name.clone(), v));
            continue;
        }
        let shape = concrete_shape(input, 1, &dims, 1)?;
        feeds.push((
            input.name.clone(),
            Value::Tensor(random_input(input, &shape, &ranges, &mut rng)?),
        ));
        random.push(input.name.clone());
    }
    if !random.is_empty() {
        eprintln!("random inputs (seed {}): {}", args.seed, random.join(", "));
    }
    let output_names: Vec<String> = model_a
        .graph
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .collect();

    // Reference values by name: B's outputs (with every intermediate for --per-node) or the .npz.
    let mut model_b = None;
    let reference: HashMap<String, Value> = match reference_npz {
        Some(arrays) => arrays
            .into_iter()
            .map(|(n, t)| (n, Value::Tensor(t)))
            .collect(),
        None => {
            let mut b = load(&args.b)?;
            if args.per_node {
                compare::expose_intermediates(&mut b);
            }
            let values = run(b.clone(), &feeds, &args.b)?;
            model_b = Some(b);
            values.into_iter().collect()
        }
    };
    if args.per_node {
        compare::expose_intermediates(&mut model_a);
    }
    let values_a = run(model_a.clone(), &feeds, &args.a)?;
    let outputs: Vec<(String, Value)> = values_a
        .iter()
        .filter(|(n, _)| output_names.contains(n))
        .cloned()
        .collect();
    let diffs = compare::diff_values(&outputs, &reference, tol);
    println!(
        "{} vs {}: rtol {:e}, atol {:e}",
        args.a.display(),
        args.b.display(),
        args.rtol,
        args.atol
    );
    print_table(&diffs);
    let failed = diffs.iter().filter(|d| !d.passes()).count();
    if args.per_node {
        let values_a: HashMap<String, Value> = values_a.into_iter().collect();
        let r = compare::first_divergence(&model_a, &values_a, &reference, tol);
        let b_nodes = model_b.map_or(0, |b| b.graph.nodes.len());
        println!(
            "per node: {} intermediate values computed by both models ({} and {} nodes)",
            r.compared,
            model_a.graph.nodes.len(),
            b_nodes
        );
        match r.first_divergence {
            None => println!("no intermediate value diverges"),
            Some(d) => {
                println!("first divergence: {} output '{}'", d.node, d.diff.name);
                print_table(std::slice::from_ref(&d.diff));
                if !d.matching_inputs.is_empty() {
                    println!("  its inputs agree: {}", d.matching_inputs.join(", "));
                }
            }
        }
    }
    println!(
        "{}: {} of {} outputs within tolerance",
        if failed == 0 { "PASS" } else { "FAIL" },
        diffs.len() - failed,
        diffs.len()
    );
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn print_table(diffs: &[ValueDiff]) {
    let width = diffs.iter().map(|d| d.name.len()).max().unwrap_or(6).max(6);
    println!(
        "  {:width$}  {:>14}  {:>12}  {:>12}  {:>15}  result",
        "output", "shape", "max abs diff", "max rel diff", "outside"
    );
    for d in diffs {
        let shape = |s: &[usize]| {
            format!(
                "[{}]",
                s.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        match &d.status {
            DiffStatus::Compared {
                closeness,
                shape: s,
            } => println!(
                "  {:width$}  {:>14}  {:>12}  {:>12}  {:>15}  {}",
                d.name,
                shape(s),
                super::sci(closeness.max_abs_diff),
                super::sci(closeness.max_rel_diff),
                format!("{}/{}", closeness.outside, closeness.total),
                if closeness.passes() { "pass" } else { "FAIL" }
            ),
            DiffStatus::ShapeMismatch { a, b } => println!(
                "  {:width$}  {:>14}  FAIL: shape {} in B",
                d.name,
                shape(a),
                shape(b)
            ),
            DiffStatus::Incomparable(why) => println!("  {:width$}  FAIL: {why}", d.name),
            DiffStatus::Missing => {
                println!("  {:width$}  FAIL: B has no value of this name", d.name)
            }
        }
    }
}
