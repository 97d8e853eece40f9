//! Models through text and back: the ONNX textual syntax, protobuf text and JSON, over the
//! fixtures and every model of the ONNX backend suite (`.cache/onnx-backend`, or
//! `$RUNNX_BACKEND_DATA`). Against onnx itself (the pinned package in `.venv`, skipped loudly
//! when absent): onnx's parser reads what we print, we read what onnx's printer writes, and
//! both sides agree on protobuf text.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use runnx_ir::convert::model_from_proto;
use runnx_ir::Model;
use runnx_onnx::proto::ModelProto;
use runnx_onnx::{ExternalDataResolver, LoadedModel};
use runnx_tools::text;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            models_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "onnx") {
            out.push(path);
        }
    }
}

fn all_models() -> Vec<PathBuf> {
    let mut models = Vec::new();
    models_under(&repo().join("tests/fixtures"), &mut models);
    models_under(&repo().join("tests/data/torch"), &mut models);
    let backend = std::env::var_os("RUNNX_BACKEND_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/onnx-backend"));
    let before = models.len();
    models_under(&backend, &mut models);
    if models.len() == before {
        eprintln!(
            "\n!!!!!!!! SKIPPED the backend suite: no models in {} (run scripts/gen_backend_data.py) !!!!!!!!\n",
            backend.display()
        );
    }
    models
}

fn ir_of(proto: ModelProto) -> Result<Model, String> {
    model_from_proto(&LoadedModel {
        proto,
        external: ExternalDataResolver::new(None),
    })
    .map_err(|e| e.to_string())
}

/// The IR without what the textual syntax cannot hold: doc strings below the model.
fn without_doc_strings(mut m: Model) -> Model {
    fn graph(g: &mut runnx_ir::Graph) {
        g.doc_string.clear();
        for v in g
            .inputs
            .iter_mut()
            .chain(&mut g.outputs)
            .chain(&mut g.value_info)
        {
            v.doc_string.clear();
        }
        nodes(&mut g.nodes);
    }
    fn nodes(nodes: &mut [runnx_ir::Node]) {
        for n in nodes {
            n.doc_string.clear();
            for a in &mut n.attributes {
                match &mut a.value {
                    runnx_ir::AttributeValue::Graph(g) => graph(std::sync::Arc::make_mut(g)),
                    runnx_ir::AttributeValue::Graphs(gs) => gs
                        .iter_mut()
                        .for_each(|g| graph(std::sync::Arc::make_mut(g))),
                    _ => {}
                }
            }
        }
    }
    graph(&mut m.graph);
    for f in &mut m.functions {
        let f = std::sync::Arc::make_mut(f);
        f.doc_string.clear();
        nodes(&mut f.nodes);
        for v in &mut f.value_info {
            v.doc_string.clear();
        }
    }
    m
}

/// Equal as IR; Debug text compares NaNs as equal.
fn same(a: &Model, b: &Model) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

/// Loads a model for the text tests; `None` for the few the IR refuses.
fn load(path: &Path) -> Option<(ModelProto, Model)> {
    let loaded = runnx_onnx::load_model(path).ok()?;
    let ir = model_from_proto(&loaded).ok()?;
    Some((loaded.proto, ir))
}

fn has_sparse_attribute(m: &Model) -> bool {
    format!("{m:?}").contains("SparseTensor")
}

#[test]
fn textual_syntax_round_trips() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in all_models() {
        let Some((_, ir)) = load(&path) else { continue };
        let printed = match text::print_text(&ir) {
            Ok(t) => t,
            Err(_) if has_sparse_attribute(&ir) => continue,
            Err(e) => {
                failures.push(format!("{}: print: {e}", path.display()));
                continue;
            }
        };
        let result = text::parse_text(&printed)
            .map_err(|e| e.to_string())
            .and_then(ir_of);
        match result {
            Ok(back) if same(&back, &without_doc_strings(ir.clone())) => checked += 1,
            Ok(_) => failures.push(format!("{}: differs after the round trip", path.display())),
            Err(e) => failures.push(format!("{}: parse: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} models round-trip through the textual syntax");
}

#[test]
fn protobuf_text_and_json_round_trip() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in all_models() {
        let Some((proto, _)) = load(&path) else {
            continue;
        };
        let bytes = proto.encode_to_vec();
        let prototxt = text::parse_prototxt(&text::print_prototxt(&proto));
        let json = text::print_json(&proto).and_then(|j| text::parse_json(&j));
        for (format, result) in [("prototxt", prototxt), ("json", json)] {
            match result {
                Ok(back) if back.encode_to_vec() == bytes => {}
                Ok(_) => failures.push(format!("{}: {format} differs", path.display())),
                Err(e) => failures.push(format!("{}: {format}: {e}", path.display())),
            }
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} models round-trip through protobuf text and JSON");
}

/// What the pinned onnx does with our text, and our parser with onnx's: one Python process
/// over a manifest of models.
const ONNX_SIDE: &str = r#"
import sys, onnx, onnx.parser, onnx.printer
from google.protobuf import text_format
out = sys.argv[1]
for i, line in enumerate(open(out + "/manifest.txt").read().splitlines()):
    model = onnx.load(line)
    try:
        parsed = onnx.parser.parse_model(open(f"{out}/{i}.ours.txt").read())
        onnx.save(parsed, f"{out}/{i}.onnx_parsed.onnx")
    except Exception as e:
        open(f"{out}/{i}.onnx_parse_error", "w").write(str(e))
    try:
        open(f"{out}/{i}.onnx_printed.txt", "w").write(onnx.printer.to_text(model))
    except Exception as e:
        pass
    open(f"{out}/{i}.onnx.prototxt", "w").write(text_format.MessageToString(model))
    ours = onnx.ModelProto()
    text_format.Parse(open(f"{out}/{i}.ours.prototxt").read(), ours)
    same = ours.SerializeToString(deterministic=True) == model.SerializeToString(deterministic=True)
    open(f"{out}/{i}.ours_prototxt_ok", "w").write(str(same))
"#;

#[test]
fn agrees_with_onnx_printer_and_parser() {
    let python = repo().join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "\n!!!!!!!! SKIPPED agreement with onnx's printer and parser: no {} (run scripts/setup-venv.sh) !!!!!!!!\n",
            python.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut models = Vec::new();
    for path in all_models() {
        let Some((proto, ir)) = load(&path) else {
            continue;
        };
        let Ok(ours) = text::print_text(&ir) else {
            continue;
        };
        let i = models.len();
        std::fs::write(out.join(format!("{i}.ours.txt")), ours).unwrap();
        std::fs::write(
            out.join(format!("{i}.ours.prototxt")),
            text::print_prototxt(&proto),
        )
        .unwrap();
        models.push((path, ir));
    }
    let manifest: Vec<String> = models
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    std::fs::write(out.join("manifest.txt"), manifest.join("\n")).unwrap();
    let status = Command::new(&python)
        .args(["-c", ONNX_SIDE])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "the onnx side failed");

    let mut failures = Vec::new();
    let (mut onnx_reads_ours, mut onnx_cannot_parse, mut we_read_onnx, mut onnx_printer_lossy) =
        (0, Vec::new(), 0, 0);
    for (i, (path, ir)) in models.iter().enumerate() {
        let expected = without_doc_strings(ir.clone());
        let file = |suffix: &str| out.join(format!("{i}.{suffix}"));
        // onnx's parser on our text.
        if file("onnx_parsed.onnx").exists() {
            let back = runnx_ir::load_model(&file("onnx_parsed.onnx")).unwrap();
            if same(&back, &expected) {
                onnx_reads_ours += 1;
            } else {
                failures.push(format!(
                    "{}: onnx parses our text differently",
                    path.display()
                ));
            }
        } else {
            onnx_cannot_parse.push(path.display().to_string());
        }
        // Our parser on onnx's text: where onnx printed every value (it writes `...` for
        // types it cannot print), we must read back the same model.
        if let Ok(theirs) = std::fs::read_to_string(file("onnx_printed.txt")) {
            if theirs.contains("...") {
                onnx_printer_lossy += 1;
            } else {
                match text::parse_text(&theirs)
                    .map_err(|e| e.to_string())
                    .and_then(ir_of)
                {
                    Ok(back) if same(&back, &expected) => we_read_onnx += 1,
                    Ok(_) => failures.push(format!(
                        "{}: we parse onnx's text differently",
                        path.display()
                    )),
                    Err(e) => failures.push(format!(
                        "{}: we cannot parse onnx's text: {e}",
                        path.display()
                    )),
                }
            }
        }
        // Protobuf text both ways.
        let ok = std::fs::read_to_string(file("ours_prototxt_ok")).unwrap_or_default();
        if ok != "True" {
            failures.push(format!(
                "{}: protobuf parses our prototxt differently",
                path.display()
            ));
        }
        let theirs = std::fs::read_to_string(file("onnx.prototxt")).unwrap();
        let original = runnx_onnx::load_model(path).unwrap().proto.encode_to_vec();
        match text::parse_prototxt(&theirs) {
            Ok(p) if p.encode_to_vec() == original => {}
            Ok(_) => failures.push(format!(
                "{}: we parse protobuf's prototxt differently",
                path.display()
            )),
            Err(e) => failures.push(format!(
                "{}: we cannot parse protobuf's prototxt: {e}",
                path.display()
            )),
        }
    }
    eprintln!(
        "{} models: onnx's parser reads our text for {onnx_reads_ours} ({} it cannot parse), we read onnx's text for {we_read_onnx} ({onnx_printer_lossy} printed with `...` by onnx)",
        models.len(),
        onnx_cannot_parse.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // onnx's parser reads the common models; what it refuses is listed for the record.
    assert!(
        onnx_reads_ours * 10 >= models.len() * 9,
        "onnx cannot parse: {onnx_cannot_parse:?}"
    );
}
