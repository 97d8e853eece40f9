//! Reading and writing ModelProto: round trips keep every field, unknown fields are skipped.

use std::path::Path;

use bytes::Bytes;
use prost::Message;
use runnx_onnx::{decode_model, load_model, save_model};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

#[test]
fn save_and_load_round_trip() {
    let loaded = load_model(&fixture("mnist_cnn.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.onnx");
    save_model(&loaded.proto, &path).unwrap();
    let again = load_model(&path).unwrap();
    assert_eq!(again.proto, loaded.proto);
    // Same bytes as the file: the exporter wrote fields in canonical order.
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        loaded.proto.encoded_len()
    );
}

#[test]
fn tensor_bytes_are_views_of_the_input_buffer() {
    let buffer = Bytes::from(std::fs::read(fixture("mnist_mlp.onnx")).unwrap());
    let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
    let model = decode_model(buffer.clone(), "mnist_mlp").unwrap();
    for t in &model.graph.unwrap().initializer {
        let raw = t.raw_data.as_ref().unwrap();
        assert!(
            range.contains(&(raw.as_ptr() as usize)),
            "raw_data of {:?} was copied",
            t.name
        );
    }
}

#[test]
fn unknown_fields_are_skipped() {
    let bytes = std::fs::read(fixture("mnist_mlp.onnx")).unwrap();
    let mut extended = bytes.clone();
    // Field 99, wire type 2 (length-delimited), 3 bytes; and field 98 varint.
    extended.extend_from_slice(&[0x9a, 0x06, 3, b'a', b'b', b'c', 0x90, 0x06, 42]);
    let model = decode_model(Bytes::from(extended), "extended").unwrap();
    assert_eq!(model.graph.unwrap().node.len(), 5);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let bytes = std::fs::read(fixture("mnist_mlp.onnx")).unwrap();
    for cut in [1, 7, 100, bytes.len() / 3, bytes.len() - 3] {
        assert!(
            decode_model(Bytes::copy_from_slice(&bytes[..cut]), "cut").is_err(),
            "cut at {cut}"
        );
    }
    assert!(decode_model(Bytes::from_static(b""), "empty").is_err());
    assert!(decode_model(Bytes::from_static(&[0xff; 64]), "ff").is_err());
}
