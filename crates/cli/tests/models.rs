//! The benchmark models through the CLI, compared with onnxruntime's reference outputs
//! (rtol 1e-4, atol 1e-5) at batch 1 and batch 8.
//!
//! mnist_mlp and mnist_cnn are fixtures in the repository; resnet18 and bert_tiny are read from
//! ../shared/bench/models when it exists, and skipped loudly otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use runnx_ir::npy::{read_npz, write_npz};
use runnx_ir::{Tensor, TensorData};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds NAME.onnx in the fixtures, else in ../shared/bench/models.
fn model_dir(name: &str) -> Option<PathBuf> {
    [
        repo().join("tests/fixtures"),
        repo().join("../shared/bench/models"),
    ]
    .into_iter()
    .find(|d| d.join(format!("{name}.onnx")).exists())
}

fn load_npz(path: &Path) -> Vec<(String, Tensor)> {
    read_npz(std::fs::File::open(path).unwrap()).unwrap()
}

fn repeat(t: &Tensor, n: usize) -> Tensor {
    let parts: Vec<&TensorData> = (0..n).map(|_| t.data()).collect();
    let mut shape = t.shape().to_vec();
    shape[0] *= n;
    Tensor::new(shape, TensorData::concat(&parts).unwrap()).unwrap()
}

fn assert_close(name: &str, expected: &Tensor, got: &Tensor) {
    assert_eq!(expected.shape(), got.shape(), "{name}: shape");
    let e = expected.as_slice::<f32>().unwrap();
    let g = got.as_slice::<f32>().unwrap();
    let mut worst = 0f32;
    for (i, (&a, &b)) in e.iter().zip(g).enumerate() {
        let err = (a - b).abs();
        assert!(
            err <= 1e-5 + 1e-4 * a.abs(),
            "{name}[{i}]: expected {a}, got {b}"
        );
        worst = worst.max(err);
    }
    eprintln!("{name}: max abs error {worst:.2e}");
}

fn check_model(name: &str) {
    let Some(dir) = model_dir(name) else {
        eprintln!("\n!!!!!!!! SKIPPED {name}: {name}.onnx is neither in tests/fixtures nor in ../shared/bench/models !!!!!!!!\n");
        return;
    };
    let inputs = load_npz(&dir.join(format!("{name}.inputs.npz")));
    let outputs = load_npz(&dir.join(format!("{name}.outputs.npz")));
    let tmp = tempfile::tempdir().unwrap();
    for batch in [1, 8] {
        let feed_path = tmp.path().join(format!("in{batch}.npz"));
        let feeds: Vec<(String, Tensor)> = inputs
            .iter()
            .map(|(n, t)| (n.clone(), repeat(t, batch)))
            .collect();
        write_npz(std::fs::File::create(&feed_path).unwrap(), &feeds).unwrap();
        let out_path = tmp.path().join(format!("out{batch}.npz"));
        let status = Command::new(env!("CARGO_BIN_EXE_runnx"))
            .args([
                "run",
                dir.join(format!("{name}.onnx")).to_str().unwrap(),
                "--input",
            ])
            .arg(&feed_path)
            .arg("--output")
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{name} batch {batch}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let got = load_npz(&out_path);
        for (out_name, expected) in &outputs {
            let g = &got
                .iter()
                .find(|(n, _)| n == out_name)
                .unwrap_or_else(|| panic!("{name}: no output {out_name}"))
                .1;
            assert_close(
                &format!("{name} batch {batch} {out_name}"),
                &repeat(expected, batch),
                g,
            );
        }
    }
}

#[test]
fn mnist_mlp() {
    check_model("mnist_mlp");
}

#[test]
fn mnist_cnn() {
    check_model("mnist_cnn");
}

#[test]
fn resnet18() {
    check_model("resnet18");
}

#[test]
fn bert_tiny() {
    check_model("bert_tiny");
}
