//! `runnx bench`: latency of repeated runs on random (or given) inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use runnx_ir::Value;
use runnx_runtime::{OptimizationLevel, Session, SessionOptions, StepProfile};

use crate::inputs::{
    concrete_shape, load_inputs, parse_dim, parse_input_arg, parse_range, random_input,
    repeat_batch, InputArg, Rng,
};

/// Dynamic dims that are neither the leading (batch) dim nor given with --dim.
const DEFAULT_DYNAMIC_DIM: usize = 128;

/// Measure run latency: median, p90, min and max over many runs after warm-up.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  runnx bench tests/fixtures/mnist_cnn.onnx --threads 1 --batch 8\n  runnx bench bert.onnx --dim sequence=128 --range input_ids=0:30522 --json"
)]
pub struct Args {
    /// The .onnx file.
    model: PathBuf,
    /// Intra-op threads (0: every core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Graph optimizations applied when the session is created.
    #[arg(long, value_enum, default_value = "all")]
    optimization: Level,
    /// Save the optimized graph here (a valid ONNX model).
    #[arg(long, value_name = "FILE.onnx")]
    save_optimized: Option<PathBuf>,
    /// Size of a leading dynamic (batch) dimension.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// NAME=VALUE for a named dynamic dimension.
    #[arg(long = "dim", value_parser = parse_dim)]
    dims: Vec<(String, usize)>,
    /// NAME=LO:HI value range of a random input (integers default to [0, 100), floats to [-1, 1)).
    #[arg(long = "range", value_parser = parse_range)]
    ranges: Vec<(String, (f64, f64))>,
    /// NAME=FILE real input instead of a random one (repeated along axis 0 up to --batch).
    #[arg(long = "input", short = 'i', value_parser = parse_input_arg)]
    inputs: Vec<InputArg>,
    /// Untimed runs first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Timed runs (default: as many as fit in --seconds).
    #[arg(long, conflicts_with = "seconds")]
    iterations: Option<usize>,
    /// Time budget for the timed runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// After timing, profile runs node by node: time per op type and the slowest nodes.
    #[arg(long)]
    profile: bool,
    /// With --profile: how many of the slowest nodes to list.
    #[arg(long, default_value_t = 15)]
    top: usize,
    /// Write a Chrome trace (chrome://tracing, Perfetto) of the profiled runs; implies --profile.
    #[arg(long, value_name = "FILE.json")]
    trace: Option<PathBuf>,
}

/// `--optimization`: onnxruntime's graph optimization levels.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Level {
    Disabled,
    Basic,
    Extended,
    All,
}

impl From<Level> for OptimizationLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Disabled => OptimizationLevel::Disabled,
            Level::Basic => OptimizationLevel::Basic,
            Level::Extended => OptimizationLevel::Extended,
            Level::All => OptimizationLevel::All,
        }
    }
}

pub fn main(args: Args) -> Result<()> {
    let options = SessionOptions {
        intra_op_threads: args.threads,
        optimization_level: args.optimization.into(),
        optimized_model_path: args.save_optimized.clone(),
    };
    let session = Session::from_file(&args.model, &options)
        .with_context(|| args.model.display().to_string())?;
    let declared: Vec<_> = session.inputs().cloned().collect();
    let given = load_inputs(&args.inputs, &declared)?;
    let dims: HashMap<String, usize> = args.dims.iter().cloned().collect();
    let ranges: HashMap<String, (f64, f64)> = args.ranges.iter().cloned().collect();
    let mut rng = Rng::new(0x5EED);
    let mut feeds: Vec<(String, Value)> = Vec::new();
    for input in &declared {
        if let Some(v) = given.get(&input.name) {
            let v = match v {
                Value::Tensor(t) => Value::Tensor(repeat_batch(t, args.batch)?),
                other => other.clone(),
            };
            feeds.push((input.name.clone(), v));
            continue;
        }
        let shape = concrete_shape(input, args.batch, &dims, DEFAULT_DYNAMIC_DIM)?;
        if let Some(tt) = input.ty.as_tensor() {
            for (axis, d) in tt.shape.iter().flatten().enumerate() {
                if let runnx_ir::Dim::Symbol(s) = d {
                    if axis > 0 && !dims.contains_key(s) {
                        eprintln!("note: dimension '{s}' of input '{}' set to {DEFAULT_DYNAMIC_DIM} (use --dim {s}=N)", input.name);
                    }
                }
            }
        }
        feeds.push((
            input.name.clone(),
            Value::Tensor(random_input(input, &shape, &ranges, &mut rng)?),
        ));
    }
    let run = |feeds: &Vec<(String, Value)>| -> Result<Duration> {
        let start = Instant::now();
        session
            .run(feeds.clone(), None)
            .with_context(|| args.model.display().to_string())?;
        Ok(start.elapsed())
    };
    for _ in 0..args.warmup {
        run(&feeds)?;
    }
    let mut times = Vec::new();
    let budget = Duration::from_secs_f64(args.seconds);
    // The bar counts runs when a run count is given, else tenths of a second of the budget.
    let progress = match args.iterations {
        Some(n) => crate::progress::bar(n as u64, "measuring"),
        None => crate::progress::bar((args.seconds * 10.0).ceil() as u64, "measuring"),
    };
    let started = Instant::now();
    loop {
        times.push(run(&feeds)?);
        match args.iterations {
            Some(_) => progress.inc(1),
            None => progress.set_position((started.elapsed().as_secs_f64() * 10.0) as u64),
        }
        let done = match args.iterations {
            Some(n) => times.len() >= n,
            None => started.elapsed() >= budget && times.len() >= 5,
        };
        if done {
            break;
        }
    }
    progress.finish_and_clear();
    if times.is_empty() {
        bail!("no timed runs");
    }
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let median = pct(0.5);
    let p90 = pct(0.9);
    let (min, max) = (ms[0], ms[ms.len() - 1]);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let threads = session.threads();
    println!(
        "{}: batch {}, {} threads, {} runs\n  median {median:.3} ms  p90 {p90:.3} ms  min {min:.3} ms  max {max:.3} ms  mean {mean:.3} ms  {:.1} runs/s",
        args.model.display(),
        args.batch,
        threads,
        ms.len(),
        1e3 / median
    );
    if args.profile || args.trace.is_some() {
        let runs = ms.len().clamp(5, 200);
        profile(&session, &feeds, runs, args.top, args.trace.as_deref())?;
    }
    if args.json {
        let json = serde_json::json!({
            "model": args.model.display().to_string(),
            "median_ms": median, "p90_ms": p90, "min_ms": min, "max_ms": max, "mean_ms": mean,
            "runs_per_s": 1e3 / median, "iterations": ms.len(), "threads": threads, "batch": args.batch,
        });
        println!("{json}");
    }
    Ok(())
}

/// Runs `runs` profiled runs and prints the time per op type and the slowest nodes (medians over
/// the runs); optionally writes every run as a Chrome trace.
fn profile(
    session: &Session,
    feeds: &[(String, Value)],
    runs: usize,
    top: usize,
    trace: Option<&Path>,
) -> Result<()> {
    let mut all_runs: Vec<(Instant, Instant, Vec<StepProfile>)> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let (_, steps) = session.run_profiled(feeds.to_vec(), None)?;
        all_runs.push((start, Instant::now(), steps));
    }
    // Per node (by position in the run): the median of its times over the runs.
    let nodes = all_runs[0].2.len();
    let median_of = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let node_ms: Vec<f64> = (0..nodes)
        .map(|i| {
            median_of(
                all_runs
                    .iter()
                    .filter_map(|(_, _, steps)| steps.get(i))
                    .map(|s| s.duration.as_secs_f64() * 1e3)
                    .collect(),
            )
        })
        .collect();
    let run_ms = median_of(
        all_runs
            .iter()
            .map(|(a, b, _)| (*b - *a).as_secs_f64() * 1e3)
            .collect(),
    );
    let steps = &all_runs[0].2;
    let total: f64 = node_ms.iter().sum();
    let mut by_type: Vec<(String, f64, usize)> = Vec::new();
    for (step, &t) in steps.iter().zip(&node_ms) {
        match by_type.iter_mut().find(|(op, _, _)| *op == step.op_type) {
            Some(entry) => {
                entry.1 += t;
                entry.2 += 1;
            }
            None => by_type.push((step.op_type.clone(), t, 1)),
        }
    }
    by_type.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "\nprofile: {runs} runs, median run {run_ms:.3} ms, nodes {total:.3} ms ({nodes} nodes; the rest is run overhead)"
    );
    println!(
        "  {:<24} {:>6} {:>10} {:>7}",
        "op type", "nodes", "ms", "share"
    );
    for (op, t, count) in &by_type {
        println!(
            "  {op:<24} {count:>6} {t:>10.3} {:>6.1}%",
            100.0 * t / total.max(f64::MIN_POSITIVE)
        );
    }
    let mut slowest: Vec<usize> = (0..nodes).collect();
    slowest.sort_by(|&a, &b| node_ms[b].total_cmp(&node_ms[a]));
    println!("\n  slowest nodes:");
    for &i in slowest.iter().take(top) {
        let step = &steps[i];
        println!(
            "  {:>8.3} ms  {:<16} {:<32} -> {:?}",
            node_ms[i],
            step.op_type,
            step.name,
            step.output_shapes.first().cloned().unwrap_or_default()
        );
    }
    if let Some(path) = trace {
        write_trace(path, &all_runs)?;
        println!("\n  trace written to {}", path.display());
    }
    Ok(())
}

/// Chrome trace event format: one complete ("X") event per node and per run, times in µs.
fn write_trace(path: &Path, runs: &[(Instant, Instant, Vec<StepProfile>)]) -> Result<()> {
    let Some(origin) = runs.first().map(|r| r.0) else {
        return Ok(());
    };
    let us = |t: Instant| (t - origin).as_secs_f64() * 1e6;
    let mut events = Vec::new();
    for (k, (start, end, steps)) in runs.iter().enumerate() {
        events.push(serde_json::json!({
            "name": format!("run {k}"), "cat": "Session", "ph": "X", "pid": 1, "tid": 0,
            "ts": us(*start), "dur": us(*end) - us(*start),
        }));
        for s in steps {
            events.push(serde_json::json!({
                "name": if s.name.is_empty() { s.op_type.clone() } else { s.name.clone() },
                "cat": "Node", "ph": "X", "pid": 1, "tid": 1,
                "ts": us(s.start), "dur": s.duration.as_secs_f64() * 1e6,
                "args": { "op_name": s.op_type, "output_shapes": s.output_shapes },
            }));
        }
    }
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    serde_json::to_writer(std::io::BufWriter::new(file), &events)
        .with_context(|| path.display().to_string())?;
    Ok(())
}
