//! The tooling commands end to end: weights, print/parse, compare, check, infer-shapes,
//! optimize, convert-opset, on the PyTorch
//! fixtures in tests/data/torch and the models in tests/fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn torch(name: &str) -> PathBuf {
    repo().join("tests/data/torch").join(name)
}

fn runnx(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runnx"))
        .args(args)
        .output()
        .unwrap()
}

macro_rules! run {
    ($($arg:expr),* $(,)?) => {
        runnx(&[$(std::ffi::OsStr::new(&$arg)),*])
    };
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn weights_diff_reports_exactly_the_drifted_tensors() {
    for weights in ["simplecnn.prm", "simplecnn.safetensors"] {
        let o = run!(
            "weights",
            "diff",
            torch("simplecnn_drifted.onnx"),
            torch(weights)
        );
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let out = stdout(&o);
        assert!(
            out.contains("8 matched, 2 differ: conv1.weight, fc.3.bias"),
            "{out}"
        );
        let o = run!("weights", "diff", torch("simplecnn.onnx"), torch(weights));
        assert!(o.status.success(), "{}", show(&o));
        assert!(stdout(&o).contains("8 matched, 0 differ"), "{}", show(&o));
    }
}

#[test]
fn patched_model_reproduces_the_torch_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let patched = dir.path().join("patched.onnx");
    let o = run!(
        "weights",
        "patch",
        torch("simplecnn_drifted.onnx"),
        torch("simplecnn.prm"),
        "-o",
        patched
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        stdout(&o).contains("replaced 2 initializer(s) (conv1.weight, fc.3.bias); 6 already equal"),
        "{}",
        show(&o)
    );
    let reference = torch("simplecnn.io.npz");
    let o = run!("compare", patched, reference, "--rtol", "0", "--atol", "1e-5");
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("PASS"), "{}", show(&o));
    let o = run!(
        "compare",
        torch("simplecnn_drifted.onnx"),
        reference,
        "--rtol",
        "0",
        "--atol",
        "1e-5"
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stdout(&o).contains("FAIL"), "{}", show(&o));
}

#[test]
fn weights_export_writes_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["w.npz", "w.safetensors"] {
        let out = dir.path().join(name);
        let o = run!("weights", "export", torch("simplecnn.onnx"), out);
        assert!(o.status.success(), "{}", show(&o));
        // What was exported diffs clean against the model.
        let o = run!(
            "weights",
            "diff",
            torch("simplecnn.onnx"),
            out,
            "--strict",
            "--rtol",
            "0",
            "--atol",
            "0"
        );
        assert!(o.status.success(), "{}", show(&o));
    }
}

#[test]
fn compare_per_node_finds_the_first_drifted_node() {
    let o = run!(
        "compare",
        torch("simplecnn_drifted.onnx"),
        torch("simplecnn.onnx"),
        "--seed",
        "3",
        "--per-node"
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    assert!(
        out.contains("first divergence: node '/conv1/Conv' (Conv) output '/conv1/Conv_output_0'"),
        "{out}"
    );
    let o = run!(
        "compare",
        torch("simplecnn.onnx"),
        torch("simplecnn.onnx"),
        "--per-node"
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        stdout(&o).contains("no intermediate value diverges"),
        "{}",
        show(&o)
    );
}

#[test]
fn print_and_parse_round_trip_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("tests/fixtures/mnist_cnn.onnx");
    let original = runnx_ir::load_model(&model).unwrap();
    for (format, ext) in [("text", "txt"), ("prototxt", "prototxt"), ("json", "json")] {
        let text = dir.path().join(format!("m.{ext}"));
        let o = run!("print", model, "--format", format, "-o", text);
        assert!(o.status.success(), "{format}: {}", show(&o));
        let back = dir.path().join(format!("{format}.onnx"));
        // Parse with the format told by the extension, and by sniffing the contents.
        let o = run!("parse", text, "-o", back);
        assert!(o.status.success(), "{format}: {}", show(&o));
        let mut parsed = runnx_ir::load_model(&back).unwrap();
        let mut expected = original.clone();
        if format == "text" {
            // The textual syntax has no graph doc string.
            expected.graph.doc_string.clear();
            parsed.graph.doc_string.clear();
        }
        assert_eq!(parsed, expected, "{format}");
        let copy = dir.path().join(format!("noext_{format}"));
        std::fs::copy(&text, &copy).unwrap();
        let o = run!("parse", copy, "-o", back);
        assert!(o.status.success(), "{format} sniffed: {}", show(&o));
    }
    let o = run!("print", torch("simplecnn.onnx"));
    assert!(o.status.success());
    let head: String = stdout(&o).lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(head.contains("opset_import: [\"\" : 17]"), "{head}");
    assert!(
        head.contains("main_graph (float[batch,1,28,28] input) => (float[batch,10] output)"),
        "{head}"
    );
}

#[test]
fn check_passes_valid_models_and_names_faults() {
    let o = run!("check", repo().join("tests/fixtures/mnist_mlp.onnx"));
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("valid"), "{}", show(&o));

    // A model whose Relu reads a value produced after it.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("bad.txt");
    std::fs::write(
        &text,
        "<ir_version: 8, opset_import: [\"\" : 17]>\n\
         g (float[2] x) => (float[2] y) {\n  [first] y = Relu (t)\n  [second] t = Neg (x)\n}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.onnx");
    let o = run!("parse", text, "-o", bad);
    assert!(o.status.success(), "{}", show(&o));
    let o = run!("check", bad);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stdout(&o).contains(
            "error: node 'first' (Relu): input 't' is used before the node that produces it"
        ),
        "{}",
        show(&o)
    );
}

#[test]
fn every_tool_command_has_help_with_an_example() {
    for cmd in [
        &["weights", "export"][..],
        &["weights", "diff"],
        &["weights", "patch"],
        &["print"],
        &["parse"],
        &["compare"],
        &["check"],
        &["infer-shapes"],
        &["optimize"],
        &["convert-opset"],
        &["inspect"],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(std::ffi::OsStr::new).collect();
        args.push(std::ffi::OsStr::new("--help"));
        let o = runnx(&args);
        assert!(o.status.success(), "{cmd:?}: {}", show(&o));
        assert!(stdout(&o).contains("Example"), "{cmd:?}: {}", stdout(&o));
    }
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

#[test]
fn infer_shapes_writes_value_info_and_inspect_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cnn.shapes.onnx");
    let o = run!("infer-shapes", fixture("mnist_cnn.onnx"), "-o", out);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("values typed"), "{}", show(&o));
    let model = runnx_ir::load_model(&out).unwrap();
    // Every node output of the CNN gets a type, the batch dimension stays named.
    let produced: Vec<&String> = model.graph.nodes.iter().flat_map(|n| &n.outputs).collect();
    let typed = model.graph.value_info.len() + model.graph.outputs.len();
    assert_eq!(typed, produced.len(), "{:?}", model.graph.value_info);
    let shapes: Vec<String> = model
        .graph
        .value_info
        .iter()
        .map(|v| v.ty.to_string())
        .collect();
    assert!(
        shapes.iter().all(|s| s.starts_with("float[batch,")),
        "{shapes:?}"
    );
    let o = run!("inspect", "--shapes", fixture("mnist_cnn.onnx"));
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("values (13"), "{}", show(&o));
}

#[test]
fn optimized_and_opset_converted_models_give_the_reference_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let optimized = dir.path().join("cnn.opt.onnx");
    let o = run!("optimize", fixture("mnist_cnn.onnx"), "-o", optimized);
    assert!(o.status.success(), "{}", show(&o));
    let converted = dir.path().join("cnn.opset11.onnx");
    let o = run!(
        "convert-opset",
        fixture("mnist_cnn.onnx"),
        "--to",
        "11",
        "-o",
        converted
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        runnx_ir::load_model(&converted).unwrap().opset(""),
        Some(11)
    );
    // onnxruntime's outputs for the original model are the reference.
    let reference = fixture("mnist_cnn.outputs.npz");
    for model in [&optimized, &converted] {
        let o = run!(
            "compare",
            model,
            reference,
            "-i",
            fixture("mnist_cnn.inputs.npz")
        );
        assert!(o.status.success(), "{}: {}", model.display(), show(&o));
        let o = run!("check", model);
        assert!(o.status.success(), "{}: {}", model.display(), show(&o));
    }
    let o = run!(
        "convert-opset",
        fixture("mnist_cnn.onnx"),
        "--to",
        "0",
        "-o",
        dir.path().join("x.onnx")
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("target opset 0"),
        "{}",
        show(&o)
    );
}
