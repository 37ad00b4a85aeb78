//! py_freeze! is a proc macro and cannot declare its inputs: tell cargo to re-freeze on edits.
//! Also lists the modules of the shim (`stdlib_shim/rg`), whose frames tracebacks leave out.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=stdlib_shim");
    let mut names = Vec::new();
    collect(Path::new("stdlib_shim/rg"), &mut Vec::new(), &mut names);
    names.sort();
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shim_modules.rs");
    let list = format!(
        "/// The module names of the frozen shim (`stdlib_shim/rg`).\npub const SHIM_MODULES: &[&str] = &{names:?};\n"
    );
    std::fs::write(out, list).expect("OUT_DIR is writable");
}

/// Module names as py_freeze gives them: `a/b.py` is `a.b`, `a/__init__.py` is `a`.
fn collect(dir: &Path, package: &mut Vec<String>, names: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).expect("stdlib_shim/rg is readable");
    for entry in entries {
        let path = entry.expect("stdlib_shim/rg is readable").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
        if path.is_dir() {
            package.push(stem);
            collect(&path, package, names);
            package.pop();
        } else if path.extension().is_some_and(|e| e == "py") {
            let mut parts = package.clone();
            if stem != "__init__" {
                parts.push(stem);
            }
            names.push(parts.join("."));
        }
    }
}
