//! Converts ONNX backend node-suite models to other opsets and checks the results in
//! onnxruntime against the suite's reference outputs (scripts/check_converted_models.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use runnx_ir::{DataType, Model, ValueType};
use runnx_opset::{convert_opset, OpsetError};

/// Backend cases (by name prefix) of the ops the converter rewrites or just re-versions.
const PREFIXES: &[&str] = &[
    "test_reshape",
    "test_squeeze",
    "test_unsqueeze",
    "test_split",
    "test_reduce_",
    "test_slice",
    "test_constant_pad",
    "test_edge_pad",
    "test_reflect_pad",
    "test_wrap_pad",
    "test_clip",
    "test_top_k",
    "test_dropout",
    "test_resize",
    "test_upsample",
    "test_batchnorm",
    "test_softmax",
    "test_logsoftmax",
    "test_hardmax",
    "test_gemm",
    "test_conv",
    "test_matmul",
    "test_relu",
    "test_add",
    "test_cast",
    "test_concat",
    "test_transpose",
    "test_gather",
    "test_scatter",
    "test_gridsample",
    "test_flatten",
    "test_argmax",
    "test_maxpool",
    "test_averagepool",
    "test_sub",
    "test_mul",
    "test_div",
    "test_sigmoid",
    "test_where",
    "test_expand",
    "test_shape",
    "test_identity",
    "test_instancenorm",
    "test_leakyrelu",
    "test_prelu",
    "test_pow",
];

/// Conversions that are right by the spec but where onnxruntime's older kernel differs:
/// Dropout-10 returns an all-false mask in inference instead of all-true.
const ORT_DEVIATIONS: &[&str] = &[
    "test_dropout_default_mask@10",
    "test_dropout_default_mask@11",
];

/// Element types numpy (and so the checking script) cannot hold.
const EXOTIC: &[DataType] = &[
    DataType::Bfloat16,
    DataType::Float8E4M3FN,
    DataType::Float8E4M3FNUZ,
    DataType::Float8E5M2,
    DataType::Float8E5M2FNUZ,
    DataType::Float8E8M0,
    DataType::Float4E2M1,
    DataType::Int4,
    DataType::Uint4,
    DataType::Int2,
    DataType::Uint2,
];

/// Whether the harness can feed and compare the case: plain tensors of numpy types only.
fn plain_tensors(model: &Model) -> bool {
    let g = &model.graph;
    g.inputs.iter().chain(&g.outputs).all(|v| match &v.ty {
        ValueType::Tensor(t) => !EXOTIC.contains(&t.dtype),
        _ => false,
    })
}

/// The oldest and newest opsets tried (onnxruntime 1.23 runs up to opset 23).
const OLDEST: i64 = 7;
const NEWEST: i64 = 23;

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("\n!!!!!!!! SKIPPED opset conversion check against onnxruntime: {why}\n");
}

#[test]
fn converted_backend_models_match_reference_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    let suite = root.join(".cache/onnx-backend/node");
    if !python.exists() || !suite.is_dir() {
        return skip_or_fail("needs .venv/bin/python and .cache/onnx-backend/node");
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&suite)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            PREFIXES.iter().any(|pre| name.starts_with(pre)) && !name.contains("_expanded")
        })
        .collect();
    cases.sort();
    let models: Vec<(PathBuf, Model)> = cases
        .into_iter()
        .map(|c| {
            (
                c.clone(),
                runnx_ir::load_model(&c.join("model.onnx")).unwrap(),
            )
        })
        .filter(|(_, m)| plain_tensors(m))
        .collect();

    let tmp = std::env::temp_dir().join(format!("runnx-opset-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut manifest = Vec::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (case, model) in &models {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let source = model.opset("").unwrap();
        for target in (OLDEST..=NEWEST).filter(|&t| t != source) {
            let id = format!("{name}@{target}");
            match convert_opset(model, target) {
                Ok(converted) => {
                    let path = tmp.join(format!("{id}.onnx"));
                    let proto = runnx_ir::convert::model_to_proto(&converted);
                    runnx_onnx::save_model(&proto, &path).unwrap();
                    manifest.push(serde_json::json!({"id": id, "model": path, "case": case}));
                }
                // Going down, an op may be missing or inexpressible; going up, only removed ops.
                Err(e @ OpsetError::MissingOps { .. }) => {
                    *refusals.entry(kind(&e)).or_default() += 1;
                }
                Err(e @ OpsetError::Unsupported { .. }) if target < source => {
                    *refusals.entry(kind(&e)).or_default() += 1;
                }
                Err(e) => unexpected.push(format!("{id}: {e}")),
            }
        }
    }
    let manifest_path = tmp.join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_string(&manifest).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(root.join("scripts/check_converted_models.py"))
        .arg(&manifest_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "checker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = summary["results"].as_array().unwrap();
    let baseline_fails = results
        .iter()
        .filter(|r| r["baseline"].as_bool().unwrap())
        .count();
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r["ok"].as_bool().unwrap() && !r["baseline"].as_bool().unwrap())
        .filter(|r| !ORT_DEVIATIONS.contains(&r["id"].as_str().unwrap()))
        .map(|r| {
            format!(
                "{}: {}",
                r["id"].as_str().unwrap(),
                r["error"].as_str().unwrap()
            )
        })
        .collect();
    std::fs::remove_dir_all(&tmp).ok();

    let refused: usize = refusals.values().sum();
    eprintln!(
        "{} backend models; {} conversions to opsets {OLDEST}..={NEWEST}: {} passed in onnxruntime, {} failed, {baseline_fails} not counted (the original fails in onnxruntime too); {refused} refused {refusals:?}",
        models.len(),
        manifest.len(),
        summary["passed"],
        failures.len(),
    );
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    for u in &unexpected {
        eprintln!("UNEXPECTED REFUSAL {u}");
    }
    assert!(failures.is_empty() && unexpected.is_empty());
    assert!(manifest.len() > 1000, "too few conversions ran");
}

/// A refusal's category for the summary: the missing operators, or the rejected reason.
fn kind(e: &OpsetError) -> String {
    match e {
        OpsetError::MissingOps { ops, .. } => format!("missing {}", ops.join("+")),
        OpsetError::Unsupported { reason, .. } => reason
            .split(['\'', '('])
            .next()
            .unwrap_or(reason)
            .trim()
            .to_string(),
        other => other.to_string(),
    }
}
