//! Command-line parsing of every RG.* command, and the configuration grammar (load arguments,
//! RG.CONFIGGET, RG.CONFIGSET): no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustgears::commands::parse::{NAMES, parse};
use rustgears::config::Config;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a command; the rest, split on NUL bytes, are its arguments.
    let Some((&pick, rest)) = data.split_first() else { return };
    let mut args = vec![NAMES[pick as usize % NAMES.len()].as_bytes().to_vec()];
    if !rest.is_empty() {
        args.extend(rest.split(|b| *b == 0).map(<[u8]>::to_vec));
    }
    let _ = parse(&args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut config = Config::from_load_args(&args[1..]).unwrap_or_default();
    for pair in args[1..].chunks(2) {
        let name = text(&pair[0]);
        let _ = config.get_element(&name);
        if let Some(value) = pair.get(1) {
            let _ = config.set_at_runtime(&name, &text(value));
        }
    }
});
