//! `Manifest::parse`: a plugin manifest, TOML or YAML by the file's extension.
//! The first input byte picks the format (even: `.toml`, odd: `.yaml`; the
//! seeds start with `T` or `Y`), the rest is the file's text.
//!
//! Property: never panics; an error is one line that names the file; a
//! manifest that parses has a non-empty name and remembers its file.

#![no_main]

use std::path::Path;

use adeploy::plugin::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&format, rest)) = data.split_first() else {
        return;
    };
    // `Manifest::read` reads with `read_to_string`: non-UTF-8 is a read error.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = if format & 1 == 0 {
        "fuzz/plugin.toml"
    } else {
        "fuzz/plugin.yaml"
    };
    match Manifest::parse(text, Path::new(file)) {
        Ok(m) => {
            assert!(!m.name.trim().is_empty(), "accepted an empty name: {m:?}");
            assert_eq!(m.path, Path::new(file));
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.contains(file), "error does not name the file: {msg:?}");
            assert!(
                !msg.contains(['\n', '\r']),
                "error is not one line: {msg:?}"
            );
        }
    }
});
