//! Regenerates the prost bindings for onnx.proto. Run from the repository root:
//! `cargo run --manifest-path tools/protogen/Cargo.toml`.
//! The output is checked in so that building runnx needs no protobuf compiler.
use prost::Message;

fn main() {
    let proto_dir = "crates/onnx/proto";
    let out_dir = "crates/onnx/src/proto";
    let descriptors = protox::compile(
        [format!("{proto_dir}/onnx.proto"), format!("{proto_dir}/onnx-data.proto")],
        [proto_dir],
    )
        .expect("onnx.proto compiles");
    // The descriptor set lets runnx-tools print and parse models as protobuf text and JSON.
    std::fs::write(format!("{out_dir}/onnx.desc"), descriptors.encode_to_vec())
        .expect("writes onnx.desc");
    let mut config = prost_build::Config::new();
    // `bytes::Bytes` for every bytes field: decoding from a `Bytes` buffer then slices it
    // instead of copying, so tensor raw_data stays a view of the file.
    config.bytes(["."]);
    config.out_dir(out_dir);
    config
        .compile_fds(descriptors)
        .expect("prost generates the bindings");
    println!("wrote {out_dir}/onnx.rs and {out_dir}/onnx.desc");
}
