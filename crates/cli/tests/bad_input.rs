//! Bad input must give a clear one-line error and exit code 1, never a panic or a hang.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use runnx_onnx::proto::{
    self, tensor_proto::DataLocation, tensor_shape_proto::dimension, type_proto, ModelProto,
    StringStringEntryProto, TensorProto,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// Runs `runnx ARGS`, expects failure, returns stderr.
fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runnx"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "runnx {args:?} should fail with exit code 1; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "runnx {args:?} panicked: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "runnx {args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    stderr
}

fn tensor_value_info(name: &str, elem: i32, dims: &[i64]) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(proto::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| proto::tensor_shape_proto::Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

/// y = Add(x, w) with w an initializer, optionally stored as external data at `location`.
fn add_model(op: &str, external: Option<&str>) -> ModelProto {
    let mut w = TensorProto {
        name: Some("w".into()),
        dims: vec![2],
        data_type: Some(1),
        ..Default::default()
    };
    match external {
        Some(location) => {
            w.data_location = Some(DataLocation::External as i32);
            w.external_data = vec![StringStringEntryProto {
                key: Some("location".into()),
                value: Some(location.into()),
            }];
        }
        None => w.float_data = vec![1.0, 2.0],
    }
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            node: vec![proto::NodeProto {
                op_type: Some(op.into()),
                name: Some("the_node".into()),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![w],
            input: vec![tensor_value_info("x", 1, &[2])],
            output: vec![tensor_value_info("y", 1, &[2])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, model: &ModelProto) -> String {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn truncated_and_random_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("mnist_mlp.onnx")).unwrap();
    for cut in [1, 100, bytes.len() / 2, bytes.len() - 1] {
        let path = dir.path().join(format!("cut{cut}.onnx"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = fails(&["inspect", path.to_str().unwrap()]);
        assert!(e.contains(&format!("cut{cut}.onnx")), "{e}");
        fails(&["run", path.to_str().unwrap()]);
    }
    // Deterministic pseudo-random bytes.
    let mut x = 0x1234_5678_u32;
    for n in [16usize, 1000, 100_000] {
        let noise: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let path = dir.path().join(format!("noise{n}.onnx"));
        std::fs::write(&path, noise).unwrap();
        fails(&["inspect", path.to_str().unwrap()]);
    }
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(fails(&["run", empty.to_str().unwrap()]).contains("empty"));
    assert!(fails(&["inspect", "/nonexistent/model.onnx"]).contains("/nonexistent/model.onnx"));
}

#[test]
fn external_data_must_stay_in_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&[
        "run",
        &write(
            dir.path(),
            "missing.onnx",
            &add_model("Add", Some("weights.bin")),
        ),
    ]);
    assert!(e.contains("weights.bin"), "{e}");
    let e = fails(&[
        "run",
        &write(
            dir.path(),
            "escape.onnx",
            &add_model("Add", Some("../../etc/passwd")),
        ),
    ]);
    assert!(
        e.contains("../../etc/passwd") && e.contains("leaves the model's folder"),
        "{e}"
    );
    let e = fails(&[
        "run",
        &write(
            dir.path(),
            "abs.onnx",
            &add_model("Add", Some("/etc/passwd")),
        ),
    ]);
    assert!(e.contains("absolute path"), "{e}");
}

#[test]
fn unknown_op_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&[
        "run",
        &write(
            dir.path(),
            "unknown.onnx",
            &add_model("FrobnicateTensor", None),
        ),
    ]);
    assert!(
        e.contains("FrobnicateTensor") && e.contains("the_node"),
        "{e}"
    );
}

#[test]
fn wrong_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "add.onnx", &add_model("Add", None));
    let save = |name: &str, t: runnx_ir::Tensor| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, runnx_ir::npy::write_npy(&t).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let good = save(
        "good.npy",
        runnx_ir::Tensor::from_vec([2], vec![1f32, 2.]).unwrap(),
    );
    let f64s = save(
        "f64.npy",
        runnx_ir::Tensor::from_vec([2], vec![1f64, 2.]).unwrap(),
    );
    let rank2 = save(
        "rank2.npy",
        runnx_ir::Tensor::from_vec([1, 2], vec![1f32, 2.]).unwrap(),
    );
    let wide = save(
        "wide.npy",
        runnx_ir::Tensor::from_vec([3], vec![1f32, 2., 3.]).unwrap(),
    );

    let e = fails(&["run", &model, "--input", &format!("nope={good}")]);
    assert!(e.contains("'nope'") && e.contains("x"), "{e}");
    let e = fails(&["run", &model, "--input", &format!("x={f64s}")]);
    assert!(
        e.contains("'x'") && e.contains("float") && e.contains("double"),
        "{e}"
    );
    let e = fails(&["run", &model, "--input", &format!("x={rank2}")]);
    assert!(e.contains("'x'") && e.contains("rank"), "{e}");
    let e = fails(&["run", &model, "--input", &format!("x={wide}")]);
    assert!(
        e.contains("'x'") && e.contains("[1, 2, 3]") || e.contains("[3]"),
        "{e}"
    );
    let e = fails(&["run", &model]);
    assert!(e.contains("'x'"), "{e}");
    let e = fails(&[
        "run",
        &model,
        "--input",
        &format!("x={good}"),
        "--output-names",
        "zzz",
    ]);
    assert!(e.contains("'zzz'"), "{e}");
    let e = fails(&["run", &model, "--input", "x=/nonexistent.npy"]);
    assert!(e.contains("/nonexistent.npy"), "{e}");
}
