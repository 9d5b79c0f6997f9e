//! Regenerates `protos/src/gen/*.rs` from `protos/proto/*.proto`:
//! `cargo run -p protos --features codegen --bin protos-codegen`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let protos = ["onnx.proto", "lenet.proto"].map(|p| root.join("proto").join(p));
    let fds = protox::compile(protos, [root.join("proto")])?;
    prost_build::Config::new()
        .out_dir(root.join("src/gen"))
        // Ordered maps: the same message always encodes to the same bytes.
        .btree_map(["."])
        .compile_fds(fds)?;
    println!("regenerated {}", root.join("src/gen").display());
    Ok(())
}
