//! Imports the committed LeNet5-like ONNX fixture into Burn code with burn-onnx's ModelGen.

fn main() {
    println!("cargo:rerun-if-changed=golden/lenet5-like/model.onnx");
    burn_onnx::ModelGen::new()
        .input("golden/lenet5-like/model.onnx")
        .out_dir("imported/")
        .run_from_script();
}
