//! Compiles the committed `proto/onnx.proto` with a vendored protoc, so no system protoc is needed.
fn main() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc is available");
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    prost_build::compile_protos(&["proto/onnx.proto"], &["proto/"]).expect("onnx.proto compiles");
}
