// py_freeze! is a proc macro and cannot declare its inputs: tell cargo to re-freeze on edits.
fn main() {
    println!("cargo:rerun-if-changed=stdlib_shim");
}
