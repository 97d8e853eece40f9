//! Shape inference against onnx's own (`onnx.shape_inference.infer_shapes` from the pinned onnx
//! package, run at test time by scripts/onnx_shape_reference.py) on the bench models and every
//! model of the ONNX backend suites.
//!
//! Each model is stripped of what it says about intermediate and output shapes; onnx and runnx
//! then infer on the same stripped file. For every value onnx types, runnx must give the same
//! element type, the same rank and the same fixed and named dimensions (where onnx leaves a
//! dimension unknown, anything is accepted). runnx's inferred outputs must also agree with the
//! output types the original model declared (runnx tracks computed shapes, so it may know more
//! than onnx; that knowledge must be right).
//!
//! Environment: `RUNNX_SHAPES_FILTER=REGEX` runs matching cases only; `RUNNX_SHAPES_UPDATE=1`
//! rewrites tests/shape_inference_expected_failures.txt (keeping existing reasons);
//! `RUNNX_SHAPES_VERBOSE=1` prints every mismatch.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use runnx_ir::{DataType, Dim, ValueType};
use runnx_shapes::{infer, InferOptions};
use serde_json::Value as Json;

const SUITES: [&str; 4] = ["node", "simple", "pytorch-converted", "pytorch-operator"];
const BENCH_MODELS: [&str; 4] = ["mnist_mlp", "mnist_cnn", "resnet18", "bert_tiny"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skip_or_fail(message: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! SKIPPED shape inference vs onnx: {message} !!!!!!!!\n");
}

fn cases() -> Vec<(String, PathBuf)> {
    let mut cases = Vec::new();
    for name in BENCH_MODELS {
        let local = repo().join(format!("tests/fixtures/{name}.onnx"));
        let shared = repo().join(format!("../shared/bench/models/{name}.onnx"));
        match [local, shared].into_iter().find(|p| p.exists()) {
            Some(p) => cases.push((format!("bench/{name}"), p)),
            None => eprintln!(
                "\n!!!!!!!! SKIPPED bench/{name}: not in tests/fixtures nor ../shared/bench/models !!!!!!!!\n"
            ),
        }
    }
    let data = std::env::var_os("RUNNX_BACKEND_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/onnx-backend"));
    if !data.join(".complete").exists() {
        skip_or_fail(&format!(
            "ONNX backend data not found at {} (run scripts/gen_backend_data.py)",
            data.display()
        ));
    }
    for suite in SUITES {
        let Ok(entries) = std::fs::read_dir(data.join(suite)) else {
            continue;
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let model = data.join(suite).join(&name).join("model.onnx");
            if model.exists() {
                cases.push((format!("{suite}/{name}"), model));
            }
        }
    }
    let filter = std::env::var("RUNNX_SHAPES_FILTER")
        .ok()
        .map(|f| regex::Regex::new(&f).expect("RUNNX_SHAPES_FILTER is a valid regex"));
    cases.retain(|(id, _)| filter.as_ref().is_none_or(|f| f.is_match(id)));
    cases
}

/// Runs onnx on every case; returns the folder with ID.onnx (stripped) and ID.json (a fresh
/// temporary folder, so concurrent test runs do not share it).
fn onnx_reference(cases: &[(String, PathBuf)]) -> Option<tempfile::TempDir> {
    let python = repo().join(".venv/bin/python");
    if !python.exists() {
        skip_or_fail(".venv/bin/python not found (run scripts/setup-venv.sh)");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("shape-reference")
        .tempdir()
        .expect("create a temporary folder");
    let out = dir.path();
    let mut child = Command::new(python)
        .arg(repo().join("scripts/onnx_shape_reference.py"))
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start python");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (id, path) in cases {
            writeln!(stdin, "{}\t{}", id.replace('/', "__"), path.display()).unwrap();
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "onnx_shape_reference.py failed"
    );
    Some(dir)
}

/// A type as the reference JSON writes it: (element type code, shape) for tensors.
fn reference_type(j: &Json) -> Option<(i32, Option<Vec<Dim>>)> {
    let elem = j.get("tensor")?.as_i64()? as i32;
    let shape = j.get("shape").and_then(Json::as_array).map(|dims| {
        dims.iter()
            .map(|d| match d {
                Json::Number(n) => Dim::Fixed(n.as_u64().unwrap_or(0) as usize),
                Json::String(s) if !s.starts_with("unk__") => Dim::Symbol(s.clone()),
                _ => Dim::Unknown,
            })
            .collect()
    });
    Some((elem, shape))
}

fn show(elem: i32, shape: &Option<Vec<Dim>>) -> String {
    let dtype = DataType::from_onnx(elem)
        .map(|d| d.to_string())
        .unwrap_or(elem.to_string());
    match shape {
        None => format!("{dtype}[...]"),
        Some(s) => format!(
            "{dtype}[{}]",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Whether runnx's type is at least as specific as the reference and agrees with it.
/// `exact_symbols`: a named reference dimension must be the same name (onnx's own inference);
/// otherwise a fixed size is also accepted (declared output types name their axes freely).
fn agrees(
    ours: &ValueType,
    elem: i32,
    shape: &Option<Vec<Dim>>,
    exact_symbols: bool,
) -> Result<(), String> {
    let theirs = show(elem, shape);
    let ValueType::Tensor(t) = ours else {
        return Err(format!(
            "runnx has {}, reference {theirs}",
            ours.type_string()
        ));
    };
    let ours_text = show(t.dtype.onnx_code(), &t.shape);
    let mismatch = || Err(format!("runnx {ours_text}, reference {theirs}"));
    if t.dtype.onnx_code() != elem {
        return mismatch();
    }
    let Some(reference) = shape else {
        return Ok(());
    };
    let Some(dims) = &t.shape else {
        return mismatch();
    };
    if dims.len() != reference.len() {
        return mismatch();
    }
    for (d, r) in dims.iter().zip(reference) {
        let ok = match r {
            Dim::Unknown => true,
            Dim::Fixed(_) => d == r,
            Dim::Symbol(_) => {
                d == r || (!exact_symbols && matches!(d, Dim::Fixed(_) | Dim::Unknown))
            }
        };
        if !ok {
            return mismatch();
        }
    }
    Ok(())
}

fn check_case(dir: &Path, file_id: &str) -> Result<usize, String> {
    let json: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{file_id}.json"))).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let model = runnx_ir::load_model(&dir.join(format!("{file_id}.onnx")))
        .map_err(|e| format!("load: {e}"))?;
    let inference = infer(&model, &InferOptions::default()).map_err(|e| e.to_string())?;
    let ours = |name: &str| -> ValueType {
        inference
            .get(name)
            .cloned()
            .or_else(|| {
                let g = &model.graph;
                g.inputs
                    .iter()
                    .find(|i| i.name == name)
                    .map(|i| i.ty.clone())
                    .or_else(|| {
                        g.initializer(name).map(|t| {
                            ValueType::tensor(
                                t.dtype(),
                                Some(t.shape().iter().map(|&d| Dim::Fixed(d)).collect()),
                            )
                        })
                    })
            })
            .unwrap_or(ValueType::Unknown)
    };
    let mut problems = Vec::new();
    let mut compared = 0;
    if json["error"].is_null() {
        for (name, reference) in json["onnx"].as_object().into_iter().flatten() {
            let Some((elem, shape)) = reference_type(reference) else {
                continue;
            };
            compared += 1;
            if let Err(e) = agrees(&ours(name), elem, &shape, true) {
                problems.push(format!("'{name}': {e}"));
            }
        }
    }
    for (name, declared) in json["declared_outputs"].as_object().into_iter().flatten() {
        let Some((elem, shape)) = reference_type(declared) else {
            continue;
        };
        let ty = ours(name);
        // Only what runnx claims is checked here: an unknown dimension claims nothing.
        if let ValueType::Tensor(t) = &ty {
            let claimed: Option<Vec<Dim>> = t.shape.clone();
            let consistent = match (&claimed, &shape) {
                (Some(c), Some(s)) => {
                    c.len() == s.len()
                        && c.iter().zip(s).all(|(a, b)| match (a, b) {
                            (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
                            _ => true,
                        })
                }
                _ => true,
            };
            if t.dtype.onnx_code() != elem || !consistent {
                problems.push(format!(
                    "output '{name}': runnx {}, the original model declares {}",
                    show(t.dtype.onnx_code(), &t.shape),
                    show(elem, &shape)
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(compared)
    } else {
        Err(problems.join("; "))
    }
}

fn expected_path() -> PathBuf {
    repo().join("tests/shape_inference_expected_failures.txt")
}

fn read_expected() -> BTreeMap<String, String> {
    std::fs::read_to_string(expected_path())
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('#') {
            Some((id, why)) => (id.trim().to_string(), why.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn shapes_agree_with_onnx() {
    let cases = cases();
    if cases.is_empty() {
        return;
    }
    let Some(dir) = onnx_reference(&cases) else {
        return;
    };
    let verbose = std::env::var_os("RUNNX_SHAPES_VERBOSE").is_some();
    let expected = read_expected();
    let mut failures = BTreeMap::new();
    let mut values = 0;
    for (id, _) in &cases {
        let file_id = id.replace('/', "__");
        let outcome = std::panic::catch_unwind(|| check_case(dir.path(), &file_id))
            .unwrap_or_else(|_| Err("panicked".to_string()));
        match outcome {
            Ok(n) => values += n,
            Err(why) => {
                if verbose {
                    eprintln!("{id}: {why}");
                }
                failures.insert(id.clone(), why);
            }
        }
    }
    let passed = cases.len() - failures.len();
    eprintln!(
        "shape inference vs onnx: {passed}/{} models agree ({values} values compared in agreeing models)",
        cases.len()
    );
    let mut per_suite: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, _) in &cases {
        let suite = id.split('/').next().unwrap();
        let e = per_suite.entry(suite).or_default();
        e.1 += 1;
        if !failures.contains_key(id) {
            e.0 += 1;
        }
    }
    for (suite, (p, t)) in &per_suite {
        eprintln!("  {suite}: {p}/{t}");
    }
    let filtered = std::env::var_os("RUNNX_SHAPES_FILTER").is_some();
    if std::env::var_os("RUNNX_SHAPES_UPDATE").is_some() {
        let ran: std::collections::HashSet<&String> = cases.iter().map(|(id, _)| id).collect();
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        for (id, why) in &expected {
            if filtered && !ran.contains(id) {
                merged.insert(id.clone(), why.clone());
            }
        }
        for (id, why) in &failures {
            let reason = expected
                .get(id)
                .filter(|r| !r.is_empty())
                .cloned()
                .unwrap_or_else(|| why.clone());
            merged.insert(id.clone(), reason);
        }
        let mut text = String::from(
            "# Models whose inferred shapes differ from onnx's: `suite/case  # reason`, one per line.\n\
             # Maintained by crates/shapes/tests/onnx_agreement.rs (RUNNX_SHAPES_UPDATE=1 rewrites it).\n",
        );
        for (id, why) in merged {
            text.push_str(&format!("{id}  # {}\n", why.replace('\n', " ")));
        }
        std::fs::write(expected_path(), text).unwrap();
        return;
    }
    let unexpected: Vec<_> = failures
        .iter()
        .filter(|(id, _)| !expected.contains_key(*id))
        .collect();
    let fixed: Vec<_> = cases
        .iter()
        .map(|(id, _)| id)
        .filter(|id| expected.contains_key(*id) && !failures.contains_key(*id))
        .collect();
    for (id, why) in &unexpected {
        eprintln!("UNEXPECTED {id}: {why}");
    }
    for id in &fixed {
        eprintln!("NOW AGREES (remove from the expected failures) {id}");
    }
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "{} unexpected failures, {} listed cases now agree",
        unexpected.len(),
        fixed.len()
    );
}
