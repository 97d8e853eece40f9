//! `model_to_proto` is the inverse of `model_from_proto`: proto -> IR -> proto -> IR gives the same
//! IR and the same bytes, over every model of the ONNX backend suite (`.cache/onnx-backend`, made by
//! `scripts/gen_backend_data.py`, or `$RUNNX_BACKEND_DATA`) and the fixtures in `tests/fixtures`.

use std::path::{Path, PathBuf};

use prost::Message;
use runnx_ir::convert::{model_from_proto, model_to_proto};
use runnx_onnx::{ExternalDataResolver, LoadedModel};

fn repo_root() -> PathBuf {
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

/// Round-trips one model; returns a description of the first difference, or whether the IR
/// accepted the model at all.
fn round_trip(path: &Path) -> Result<bool, String> {
    let loaded = runnx_onnx::load_model(path).map_err(|e| e.to_string())?;
    let ir = match model_from_proto(&loaded) {
        Ok(ir) => ir,
        // Models the IR refuses (a few backend cases test invalid data) have nothing to round-trip.
        Err(_) => return Ok(false),
    };
    let proto = model_to_proto(&ir);
    let bytes = proto.encode_to_vec();
    let again = LoadedModel {
        proto: runnx_onnx::decode_model(bytes.clone().into(), "re-encoded model")
            .map_err(|e| e.to_string())?,
        external: ExternalDataResolver::new(None),
    };
    let ir2 = model_from_proto(&again).map_err(|e| format!("re-encoded model: {e}"))?;
    // Debug text compares NaN payloads as equal, unlike PartialEq on float tensors.
    if ir != ir2 && format!("{ir:?}") != format!("{ir2:?}") {
        return Err("IR differs after the round trip".into());
    }
    if model_to_proto(&ir2).encode_to_vec() != bytes {
        return Err("second encoding differs from the first".into());
    }
    Ok(true)
}

#[test]
fn fixtures_round_trip() {
    let mut models = Vec::new();
    models_under(&repo_root().join("tests/fixtures"), &mut models);
    assert!(!models.is_empty(), "no models in tests/fixtures");
    for m in &models {
        let accepted = round_trip(m).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        assert!(accepted, "{}: the IR refuses it", m.display());
    }
}

#[test]
fn backend_suite_round_trips() {
    let data = std::env::var_os("RUNNX_BACKEND_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/onnx-backend"));
    let mut models = Vec::new();
    models_under(&data, &mut models);
    if models.is_empty() {
        eprintln!(
            "SKIPPED: no backend models in {} (run scripts/gen_backend_data.py)",
            data.display()
        );
        return;
    }
    let mut failures = Vec::new();
    let mut accepted = 0;
    for m in &models {
        match round_trip(m) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(e) => failures.push(format!("{}: {e}", m.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} models fail to round-trip:\n{}",
        failures.len(),
        models.len(),
        failures.join("\n")
    );
    eprintln!(
        "{accepted} of {} backend models round-trip (the IR refuses the others)",
        models.len()
    );
    assert!(
        accepted * 10 > models.len() * 9,
        "the IR refuses too many models"
    );
}
