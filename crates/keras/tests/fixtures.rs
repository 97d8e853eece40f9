//! Converts every Keras fixture in tests/data/keras (from .h5 and from .keras) and checks the
//! graph's interface. Numerical checks against Keras's outputs run the converted models in
//! `crates/cli/tests/keras.rs` (runnx) and `python/tests/test_keras.py` (onnxruntime).
//!
//! The converted models are written to `$CARGO_TARGET_TMPDIR/keras/` for inspection.

use std::path::{Path, PathBuf};

use runnx_keras::{convert_file, Options};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/keras");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/keras")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("h5" | "keras")))
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_converts() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keras");
    std::fs::create_dir_all(&out).unwrap();
    let files = fixtures();
    assert_eq!(files.len(), 22, "11 models, .h5 and .keras");
    let mut failures = Vec::new();
    for f in &files {
        match convert_file(f, &Options::default()) {
            Ok(model) => {
                let g = model.graph.as_ref().unwrap();
                assert!(
                    !g.input.is_empty() && !g.output.is_empty(),
                    "{}",
                    f.display()
                );
                let name = format!(
                    "{}.{}.onnx",
                    f.file_stem().unwrap().to_str().unwrap(),
                    f.extension().unwrap().to_str().unwrap()
                );
                runnx_onnx::save_model(&model, &out.join(name)).unwrap();
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn names_follow_keras() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/keras");
    for ext in ["h5", "keras"] {
        let m = convert_file(
            &dir.join(format!("two_inputs_two_outputs.{ext}")),
            &Options::default(),
        )
        .unwrap();
        let g = m.graph.unwrap();
        let names = |v: &[runnx_onnx::proto::ValueInfoProto]| -> Vec<String> {
            v.iter().map(|i| i.name.clone().unwrap()).collect()
        };
        assert_eq!(names(&g.input), ["a", "b"]);
        assert_eq!(names(&g.output), ["dense_16", "multiply"]);
    }
}
