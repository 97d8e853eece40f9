//! The PyTorch fixtures in `tests/data/torch` (a small CNN): its state_dict saved by `torch.save`
//! (`simplecnn.prm`), the same weights as safetensors, the ONNX export, a drifted export whose
//! `conv1.weight` and `fc.3.bias` differ, and reference input/output (`simplecnn.io.npz`).

use std::path::{Path, PathBuf};

use runnx_ir::{Tensor, Value};
use runnx_runtime::{Session, SessionOptions};
use runnx_tools::numeric::{tensor_closeness, Tolerance};
use runnx_tools::weights::{self, WeightsFormat};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/torch")
        .join(name)
}

fn npz(name: &str) -> Vec<(String, Tensor)> {
    let f = std::fs::File::open(data(name)).unwrap();
    runnx_ir::npy::read_npz(std::io::BufReader::new(f)).unwrap()
}

#[test]
fn torch_state_dict_equals_safetensors() {
    let (format, torch) = weights::read_weights(&data("simplecnn.prm")).unwrap();
    assert_eq!(format, WeightsFormat::Torch);
    let (format, st) = weights::read_weights(&data("simplecnn.safetensors")).unwrap();
    assert_eq!(format, WeightsFormat::Safetensors);
    let names: Vec<&str> = torch.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc.0.weight",
            "fc.0.bias",
            "fc.3.weight",
            "fc.3.bias"
        ]
    );
    assert_eq!(torch[0].1.shape(), &[32, 1, 5, 5]);
    // safetensors keeps tensors in its own order: compare by name.
    let mut st = st;
    st.sort_by(|a, b| a.0.cmp(&b.0));
    let mut torch = torch;
    torch.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        torch.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        st.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in torch.iter().zip(&st) {
        assert!(
            a == b,
            "{name} differs between the torch and safetensors files"
        );
    }
}

#[test]
fn diff_finds_exactly_the_drifted_tensors() {
    let tol = Tolerance {
        rtol: 1e-5,
        atol: 1e-6,
    };
    for w in ["simplecnn.prm", "simplecnn.safetensors"] {
        let (_, weights) = weights::read_weights(&data(w)).unwrap();
        let clean = runnx_ir::load_model(&data("simplecnn.onnx")).unwrap();
        let d = weights::diff_weights(&clean, &weights, tol);
        assert_eq!(d.tensors.len(), 8);
        assert_eq!(d.differing().count(), 0, "{w}: {:?}", d);
        assert!(d.missing_in_model.is_empty() && d.missing_in_weights.is_empty());

        let drifted = runnx_ir::load_model(&data("simplecnn_drifted.onnx")).unwrap();
        let d = weights::diff_weights(&drifted, &weights, tol);
        let names: Vec<&str> = d.differing().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["conv1.weight", "fc.3.bias"], "{w}");
    }
}

#[test]
fn patched_drifted_model_reproduces_torch_outputs() {
    let (_, weights) = weights::read_weights(&data("simplecnn.prm")).unwrap();
    let mut model = runnx_ir::load_model(&data("simplecnn_drifted.onnx")).unwrap();
    let report = weights::patch_weights(&mut model, &weights).unwrap();
    assert_eq!(report.replaced, ["conv1.weight", "fc.3.bias"]);
    assert_eq!(report.unchanged.len(), 6);

    // Write and reload, as `runnx weights patch` does.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("patched.onnx");
    runnx_onnx::save_model(&runnx_ir::convert::model_to_proto(&model), &out).unwrap();
    let session = Session::from_file(&out, &SessionOptions::default()).unwrap();
    let io = npz("simplecnn.io.npz");
    let input = io.iter().find(|(n, _)| n == "input").unwrap().1.clone();
    let expected = &io.iter().find(|(n, _)| n == "output").unwrap().1;
    let outputs = session
        .run(vec![("input".into(), Value::Tensor(input.clone()))], None)
        .unwrap();
    let got = outputs[0].as_tensor().unwrap();
    let tol = Tolerance {
        rtol: 0.0,
        atol: 1e-5,
    };
    let c = tensor_closeness(got, expected, tol).unwrap();
    assert!(c.passes(), "patched model: {c:?}");

    // The drifted model itself does not reproduce them.
    let session =
        Session::from_file(&data("simplecnn_drifted.onnx"), &SessionOptions::default()).unwrap();
    let outputs = session
        .run(vec![("input".into(), Value::Tensor(input))], None)
        .unwrap();
    let c = tensor_closeness(outputs[0].as_tensor().unwrap(), expected, tol).unwrap();
    assert!(!c.passes());
}
