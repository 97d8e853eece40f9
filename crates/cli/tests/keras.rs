//! `runnx convert` on the Keras fixtures in tests/data/keras (from .h5 and from .keras): each
//! converted model runs in the runnx engine on NAME.io.npz's inputs (x0, x1) and must reproduce
//! Keras's outputs (y0, y1) within rtol 1e-4, atol 1e-5.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use runnx_ir::npy::read_npz;
use runnx_ir::{DataType, Tensor, TensorData, Value, ValueType};
use runnx_runtime::{Session, SessionOptions};

const MODELS: [&str; 11] = [
    "attention_block",
    "batchnorm_activations",
    "conv1d_text",
    "conv2d_nhwc",
    "dense_mlp",
    "depthwise_separable",
    "gru_bidirectional",
    "lstm",
    "resblock_functional",
    "reshape_permute",
    "two_inputs_two_outputs",
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/keras")
}

fn convert(model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runnx"))
        .arg("convert")
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Keras casts inputs to the model's dtype; the fixtures store some as int32.
fn as_dtype(t: &Tensor, dtype: DataType) -> Tensor {
    if t.dtype() == dtype {
        return t.clone();
    }
    let v: Vec<f64> = match t.data() {
        TensorData::Int32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Float(v) => v.iter().map(|&x| x as f64).collect(),
        other => panic!("unexpected input type {:?}", other.dtype()),
    };
    match dtype {
        DataType::Float => Tensor::from_vec(t.shape(), v.iter().map(|&x| x as f32).collect()),
        DataType::Int32 => Tensor::from_vec(t.shape(), v.iter().map(|&x| x as i32).collect()),
        DataType::Int64 => Tensor::from_vec(t.shape(), v.iter().map(|&x| x as i64).collect()),
        other => panic!("unexpected model input type {other:?}"),
    }
    .unwrap()
}

/// Max abs error of `got` against `expected`, asserting rtol 1e-4, atol 1e-5.
fn max_error(what: &str, expected: &Tensor, got: &Tensor) -> f32 {
    assert_eq!(expected.shape(), got.shape(), "{what}: shape");
    let e = expected.as_slice::<f32>().unwrap();
    let g = got.as_slice::<f32>().unwrap();
    let mut worst = 0f32;
    for (i, (&a, &b)) in e.iter().zip(g).enumerate() {
        let err = (a - b).abs();
        assert!(
            err <= 1e-5 + 1e-4 * a.abs(),
            "{what}[{i}]: Keras {a}, runnx {b}"
        );
        worst = worst.max(err);
    }
    worst
}

fn check(name: &str, ext: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join(format!("{name}.onnx"));
    let out = convert(&data().join(format!("{name}.{ext}")), &onnx, &[]);
    assert!(
        out.status.success(),
        "{name}.{ext}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The converted model passes runnx's own checker (the pytest runs onnx's full_check).
    let checked = Command::new(env!("CARGO_BIN_EXE_runnx"))
        .arg("check")
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{name}.{ext}: runnx check: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let io = read_npz(std::fs::File::open(data().join(format!("{name}.io.npz"))).unwrap()).unwrap();
    let get = |k: &str| io.iter().find(|(n, _)| n == k).map(|(_, t)| t.clone());
    let session = Session::from_file(&onnx, &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{name}.{ext}: {e}"));
    let feeds: Vec<(String, Value)> = session
        .inputs()
        .enumerate()
        .map(|(i, vi)| {
            let x = get(&format!("x{i}")).unwrap_or_else(|| panic!("{name}: no x{i}"));
            let ValueType::Tensor(tt) = &vi.ty else {
                panic!("{name}: input {} is not a tensor", vi.name)
            };
            (vi.name.clone(), Value::Tensor(as_dtype(&x, tt.dtype)))
        })
        .collect();
    let outputs = session
        .run(feeds, None)
        .unwrap_or_else(|e| panic!("{name}.{ext}: {e}"));
    let mut errors = Vec::new();
    for (i, v) in outputs.iter().enumerate() {
        let Value::Tensor(got) = v else {
            panic!("{name}: output {i} is not a tensor")
        };
        let expected = get(&format!("y{i}")).unwrap();
        errors.push(max_error(&format!("{name}.{ext} y{i}"), &expected, got));
    }
    let errors: Vec<String> = errors.iter().map(|e| format!("{e:.2e}")).collect();
    eprintln!("{name}.{ext}: max abs error {}", errors.join(" "));
}

#[test]
fn every_fixture_matches_keras_in_runnx() {
    for name in MODELS {
        for ext in ["h5", "keras"] {
            check(name, ext);
        }
    }
}

#[test]
fn inputs_as_nchw_declares_channels_first() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("m.onnx");
    let out = convert(
        &data().join("conv2d_nhwc.keras"),
        &onnx,
        &["--inputs-as-nchw", "input_layer_1", "--opset", "18"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = Session::from_file(&onnx, &SessionOptions::default()).unwrap();
    let input = session.inputs().next().unwrap().clone();
    let ValueType::Tensor(tt) = &input.ty else {
        panic!()
    };
    let dims: Vec<String> = tt
        .shape
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| format!("{d:?}"))
        .collect();
    assert_eq!(dims[1..], ["Fixed(1)", "Fixed(28)", "Fixed(28)"]);
    // Same numbers as the NHWC model on the transposed input.
    let io = read_npz(std::fs::File::open(data().join("conv2d_nhwc.io.npz")).unwrap()).unwrap();
    let x = io.iter().find(|(n, _)| n == "x0").unwrap().1.clone();
    let (b, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let nchw = Tensor::from_vec([b, 1, h, w], x.as_slice::<f32>().unwrap().to_vec()).unwrap();
    let got = session
        .run(vec![(input.name, Value::Tensor(nchw))], None)
        .unwrap();
    let Value::Tensor(got) = &got[0] else {
        panic!()
    };
    let expected = io.iter().find(|(n, _)| n == "y0").unwrap().1.clone();
    max_error("conv2d_nhwc nchw", &expected, got);
}

#[test]
fn an_unsupported_layer_names_itself_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // conv2d_nhwc.keras with its first Conv2D renamed to a class runnx does not convert.
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(data().join("conv2d_nhwc.keras")).unwrap())
            .unwrap();
    let bad = tmp.path().join("bad.keras");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&bad).unwrap());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name == "config.json" {
            let text = String::from_utf8(bytes).unwrap();
            bytes = text
                .replacen("\"Conv2D\"", "\"ConvLSTM2D\"", 1)
                .into_bytes();
        }
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap();
    let onnx = tmp.path().join("bad.onnx");
    let out = convert(&bad, &onnx, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("layer 'conv2d' (ConvLSTM2D)") && stderr.contains("not supported"),
        "{stderr}"
    );
    assert!(!onnx.exists(), "no file is written on error");
}
