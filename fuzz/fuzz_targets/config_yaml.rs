//! `Config::from_layers`: the user's config merged over the embedded default,
//! parsed, merged and validated exactly as `adeploy --config FILE` does.
//!
//! Property: never panics; an error is one line that starts with the file.

#![no_main]

use std::path::Path;

use adeploy::config::Config;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz/deployment_config.yaml";

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads with `read_to_string`: non-UTF-8 is a read error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_layers(text, Path::new(FILE)) {
        Ok(config) => {
            // What the engine asks of a loaded config must not panic either.
            for name in config.services.keys() {
                let _ = config.hosts_of(name);
            }
            let _ = config.base_dir();
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(
                msg.starts_with(FILE),
                "error does not name the file: {msg:?}"
            );
            assert!(
                !msg.contains(['\n', '\r']),
                "error is not one line: {msg:?}"
            );
        }
    }
});
