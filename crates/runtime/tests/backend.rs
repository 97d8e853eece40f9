//! The ONNX backend test suite: every case of the node, simple, pytorch-converted and
//! pytorch-operator suites of the pinned onnx package, run and compared with the reference
//! outputs (floats within rtol 1e-3 / atol 1e-7 as onnx's own runner, or the case's own
//! tolerance; integers, bools and strings exactly).
//!
//! Data: generated once by `scripts/gen_backend_data.py` into `.cache/onnx-backend` (or
//! `$RUNNX_BACKEND_DATA`). Expected failures: `tests/backend_expected_failures.txt`; a case that
//! fails without being listed, or passes while listed, fails the test. Cases whose reference
//! outputs are random draws (`RANDOM_OUTPUT_CASES`) are skipped and counted as such.
//!
//! Environment:
//! - `RUNNX_BACKEND_FILTER=REGEX`: run only cases whose `suite/case` name matches.
//! - `RUNNX_BACKEND_UPDATE=1`: rewrite the expected-failures file from this run (reasons of
//!   entries that still fail are kept).
//! - `RUNNX_BACKEND_VERBOSE=1`: print every failure's message.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use runnx_ir::{convert, DataType, Tensor, TensorData, Value, ValueType};
use runnx_runtime::{Session, SessionOptions};

const SUITES: [&str; 4] = ["node", "simple", "pytorch-converted", "pytorch-operator"];
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Case-name prefixes whose reference outputs come from numpy's global random state when onnx
/// generated them: no implementation can reproduce them, and a lucky draw may even match, so they
/// can be neither passes nor expected failures.
const RANDOM_OUTPUT_CASES: [&str; 1] = ["node/test_bernoulli"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() {
    let data = std::env::var_os("RUNNX_BACKEND_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/onnx-backend"));
    if !data.join(".complete").exists() {
        let msg = format!(
            "ONNX backend data not found at {} — run scripts/gen_backend_data.py (the README's test command does)",
            data.display()
        );
        if std::env::var_os("CI").is_some() {
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
        eprintln!("\n!!!!!!!! SKIPPED the ONNX backend suite: {msg} !!!!!!!!\n");
        return;
    }
    let filter = std::env::var("RUNNX_BACKEND_FILTER")
        .ok()
        .map(|f| regex::Regex::new(&f).expect("RUNNX_BACKEND_FILTER is a valid regex"));
    let verbose = std::env::var_os("RUNNX_BACKEND_VERBOSE").is_some();
    let expected_path = repo_root().join("tests/backend_expected_failures.txt");
    let expected = read_expected(&expected_path);

    let mut cases = Vec::new();
    let mut skipped_random = Vec::new();
    for suite in SUITES {
        let dir = data.join(suite);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let id = format!("{suite}/{name}");
            if filter.as_ref().is_some_and(|f| !f.is_match(&id)) {
                continue;
            }
            if RANDOM_OUTPUT_CASES.iter().any(|p| id.starts_with(p)) {
                skipped_random.push(id);
            } else {
                cases.push((suite, id, dir.join(&name)));
            }
        }
    }

    let started = Instant::now();
    let results = run_all(&cases);
    let mut per_suite: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut unexpected_failures = Vec::new();
    let mut unexpected_passes = Vec::new();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    for ((suite, id, _), result) in cases.iter().zip(&results) {
        let entry = per_suite.entry(suite).or_default();
        match result {
            Ok(()) => {
                entry.0 += 1;
                if expected.contains_key(id) {
                    unexpected_passes.push(id.clone());
                }
            }
            Err(msg) => {
                entry.1 += 1;
                let one_line = msg
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>();
                if verbose {
                    println!("FAIL {id}: {one_line}");
                }
                if !expected.contains_key(id) {
                    unexpected_failures.push(format!("{id}: {one_line}"));
                }
                failures.insert(id.clone(), one_line);
            }
        }
    }

    println!(
        "\nONNX backend suite (onnx 1.23.2), {:.1} s:",
        started.elapsed().as_secs_f64()
    );
    let (mut total_pass, mut total_fail) = (0, 0);
    for suite in SUITES {
        if let Some((p, f)) = per_suite.get(suite) {
            println!("  {suite:<18} {p:>5} passed {f:>5} failed (of {})", p + f);
            total_pass += p;
            total_fail += f;
        }
    }
    println!(
        "  {:<18} {total_pass:>5} passed {total_fail:>5} failed (of {})",
        "total",
        total_pass + total_fail
    );
    if !skipped_random.is_empty() {
        println!(
            "  skipped {} case(s) with random reference outputs: {}",
            skipped_random.len(),
            skipped_random.join(", ")
        );
    }

    if std::env::var_os("RUNNX_BACKEND_UPDATE").is_some() {
        write_expected(
            &expected_path,
            &expected,
            &failures,
            filter.is_some(),
            &cases,
        );
        println!("updated {}", expected_path.display());
        println!("backend: {total_pass} passed, 0 failed");
        return;
    }
    let mut ok = true;
    if !unexpected_failures.is_empty() {
        ok = false;
        println!(
            "\n{} case(s) fail that are not in {}:",
            unexpected_failures.len(),
            expected_path.display()
        );
        for f in &unexpected_failures {
            println!("  {f}");
        }
    }
    if !unexpected_passes.is_empty() {
        ok = false;
        println!(
            "\n{} case(s) now pass but are listed as expected failures (remove them, or run with RUNNX_BACKEND_UPDATE=1):",
            unexpected_passes.len()
        );
        for p in &unexpected_passes {
            println!("  {p}");
        }
    }
    let bad = unexpected_failures.len() + unexpected_passes.len();
    println!("backend: {} passed, {bad} failed", cases.len() - bad);
    if !ok {
        std::process::exit(1);
    }
}

/// Runs every case on a worker thread each (two at a time), with a time limit per case.
fn run_all(cases: &[(&str, String, PathBuf)]) -> Vec<Result<(), String>> {
    let workers = 2;
    let mut results: Vec<Option<Result<(), String>>> = vec![None; cases.len()];
    let (tx, rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let mut next = 0;
    let mut running: HashMap<usize, Instant> = HashMap::new();
    loop {
        while running.len() < workers && next < cases.len() {
            let i = next;
            next += 1;
            let dir = cases[i].2.clone();
            let tx = tx.clone();
            running.insert(i, Instant::now());
            std::thread::spawn(move || {
                let result = std::panic::catch_unwind(|| run_case(&dir)).unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(format!("PANIC: {msg}"))
                });
                let _ = tx.send((i, result));
            });
        }
        if running.is_empty() {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((i, r)) => {
                running.remove(&i);
                results[i] = Some(r);
            }
            Err(_) => {
                let late: Vec<usize> = running
                    .iter()
                    .filter(|(_, t)| t.elapsed() > CASE_TIMEOUT)
                    .map(|(i, _)| *i)
                    .collect();
                for i in late {
                    // The thread keeps running; it is abandoned, its result ignored.
                    running.remove(&i);
                    results[i] = Some(Err(format!(
                        "TIMEOUT: took more than {} s",
                        CASE_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("no result".into())))
        .collect()
}

fn run_case(dir: &Path) -> Result<(), String> {
    let options = SessionOptions {
        intra_op_threads: 1,
        ..Default::default()
    };
    let (rtol, atol) = tolerance(dir);
    let session =
        Session::from_file(&dir.join("model.onnx"), &options).map_err(|e| format!("load: {e}"))?;
    let inputs: Vec<(String, ValueType)> = session
        .inputs()
        .map(|v| (v.name.clone(), v.ty.clone()))
        .collect();
    let outputs: Vec<(String, ValueType)> = session
        .outputs()
        .map(|v| (v.name.clone(), v.ty.clone()))
        .collect();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test data sets".into());
    }
    for set in sets {
        let mut feeds = Vec::new();
        for (i, (name, ty)) in inputs.iter().enumerate() {
            let path = set.join(format!("input_{i}.pb"));
            if !path.exists() {
                continue; // an optional input the case leaves out
            }
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            let value = convert::value_from_pb(&bytes, ty)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            feeds.push((name.clone(), value));
        }
        let got = session.run(feeds, None).map_err(|e| format!("run: {e}"))?;
        for (i, ((name, ty), value)) in outputs.iter().zip(&got).enumerate() {
            let path = set.join(format!("output_{i}.pb"));
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let expected = convert::value_from_pb(&bytes, ty)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            compare(&expected, value, rtol, atol).map_err(|e| format!("output '{name}': {e}"))?;
        }
    }
    Ok(())
}

/// The case's tolerance from its meta.json (written by the generator), else onnx's defaults.
fn tolerance(dir: &Path) -> (f64, f64) {
    let mut rtol = 1e-3;
    let mut atol = 1e-7;
    if let Ok(text) = std::fs::read_to_string(dir.join("meta.json")) {
        let number = |key: &str| -> Option<f64> {
            let rest = &text[text.find(&format!("\"{key}\""))? + key.len() + 2..];
            let rest = rest.trim_start().strip_prefix(':')?.trim_start();
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            rest[..end].trim().parse().ok()
        };
        rtol = number("rtol").unwrap_or(rtol);
        atol = number("atol").unwrap_or(atol);
    }
    (rtol, atol)
}

fn compare(expected: &Value, got: &Value, rtol: f64, atol: f64) -> Result<(), String> {
    match (expected, got) {
        (Value::Tensor(e), Value::Tensor(g)) => compare_tensors(e, g, rtol, atol),
        (Value::Sequence { items: e, .. }, Value::Sequence { items: g, .. }) => {
            if e.len() != g.len() {
                return Err(format!("sequence of {} expected, got {}", e.len(), g.len()));
            }
            for (i, (e, g)) in e.iter().zip(g).enumerate() {
                compare(e, g, rtol, atol).map_err(|m| format!("item {i}: {m}"))?;
            }
            Ok(())
        }
        (Value::Optional { value: e, .. }, Value::Optional { value: g, .. }) => match (e, g) {
            (None, None) => Ok(()),
            (Some(e), Some(g)) => compare(e, g, rtol, atol),
            _ => Err(format!(
                "expected {}, got {}",
                expected.describe(),
                got.describe()
            )),
        },
        // An optional holding a value compares equal to the bare value (and vice versa).
        (Value::Optional { value: Some(e), .. }, g) => compare(e, g, rtol, atol),
        (e, Value::Optional { value: Some(g), .. }) => compare(e, g, rtol, atol),
        _ => Err(format!(
            "expected {}, got {}",
            expected.describe(),
            got.describe()
        )),
    }
}

fn compare_tensors(e: &Tensor, g: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if e.dtype() != g.dtype() {
        return Err(format!(
            "expected element type {}, got {}",
            e.dtype(),
            g.dtype()
        ));
    }
    if e.shape() != g.shape() {
        return Err(format!(
            "expected shape {:?}, got {:?}",
            e.shape(),
            g.shape()
        ));
    }
    // onnx's runner compares bfloat16 with rtol raised to 2^-6 (its 8-bit mantissa).
    let floats = |e: Vec<f64>, g: Vec<f64>, rtol: f64| -> Result<(), String> {
        e.iter().zip(&g).enumerate().try_for_each(|(i, (&a, &b))| {
            if (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= atol + rtol * a.abs() {
                Ok(())
            } else {
                Err(format!("element {i}: expected {a}, got {b}"))
            }
        })
    };
    match (e.data(), g.data()) {
        (TensorData::Float(a), TensorData::Float(b)) => floats(
            a.iter().map(|&x| x as f64).collect(),
            b.iter().map(|&x| x as f64).collect(),
            rtol,
        ),
        (TensorData::Double(a), TensorData::Double(b)) => floats(a.clone(), b.clone(), rtol),
        (TensorData::Float16(a), TensorData::Float16(b)) => floats(
            a.iter().map(|x| x.to_f64()).collect(),
            b.iter().map(|x| x.to_f64()).collect(),
            rtol,
        ),
        (TensorData::Bfloat16(a), TensorData::Bfloat16(b)) => floats(
            a.iter().map(|x| x.to_f64()).collect(),
            b.iter().map(|x| x.to_f64()).collect(),
            rtol.max(1.0 / 64.0),
        ),
        (TensorData::Complex64(a), TensorData::Complex64(b)) => floats(
            a.iter().flat_map(|c| [c.re as f64, c.im as f64]).collect(),
            b.iter().flat_map(|c| [c.re as f64, c.im as f64]).collect(),
            rtol,
        ),
        (TensorData::Complex128(a), TensorData::Complex128(b)) => floats(
            a.iter().flat_map(|c| [c.re, c.im]).collect(),
            b.iter().flat_map(|c| [c.re, c.im]).collect(),
            rtol,
        ),
        _ if e.dtype().is_float() && e.dtype() != DataType::Float => {
            // float8/float4 values: compare the codes exactly.
            if e.data() == g.data() {
                Ok(())
            } else {
                Err(format!("{} values differ", e.dtype()))
            }
        }
        _ => {
            if e.data() == g.data() {
                Ok(())
            } else {
                let idx = (0..e.len())
                    .find(|&i| e.data().gather(&[i]) != g.data().gather(&[i]))
                    .unwrap_or(0);
                Err(format!(
                    "element {idx}: expected {:?}, got {:?}",
                    e.data().gather(&[idx]),
                    g.data().gather(&[idx])
                ))
            }
        }
    }
}

fn read_expected(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('#') {
            Some((id, reason)) => (id.trim().to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn write_expected(
    path: &Path,
    old: &BTreeMap<String, String>,
    failures: &BTreeMap<String, String>,
    filtered: bool,
    cases: &[(&str, String, PathBuf)],
) {
    let ran: std::collections::HashSet<&String> = cases.iter().map(|(_, id, _)| id).collect();
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    if filtered {
        // Keep the entries of cases this run did not touch.
        for (id, reason) in old {
            if !ran.contains(id) {
                merged.insert(id.clone(), reason.clone());
            }
        }
    }
    for (id, message) in failures {
        let reason = old
            .get(id)
            .filter(|r| !r.is_empty())
            .cloned()
            .unwrap_or_else(|| message.clone());
        merged.insert(id.clone(), reason);
    }
    let mut out = String::from(
        "# ONNX backend cases runnx is known to fail: `suite/case  # reason`, one per line.\n\
         # Maintained by crates/runtime/tests/backend.rs (RUNNX_BACKEND_UPDATE=1 rewrites it).\n",
    );
    for (id, reason) in merged {
        out.push_str(&format!("{id}  # {}\n", reason.replace('\n', " ")));
    }
    std::fs::write(path, out).expect("write the expected-failures file");
}
