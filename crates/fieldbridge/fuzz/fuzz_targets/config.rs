//! Arbitrary bytes as `gateway.yaml` through the loader `fieldbridge check`
//! uses (`config::load_with_env`, `Purpose::Check`), and a loaded config
//! through the `check` report: errors are fine, panics are not.
//!
//! The loader reads one other file, `xmpp.secret_file`, and fuzzed text
//! could name any path. The loader itself refuses, before opening it, what
//! is not a regular file or is over 4 KiB (`/dev/zero`, FIFOs), but any
//! small regular file anywhere would still be read (real secrets, files
//! under /proc and /sys), which a fuzzer has no business doing. So the
//! target never lets it open one: the secret always comes from
//! `FIELDBRIDGE__XMPP__SECRET`, which the loader prefers to `secret_file`
//! (the override is grafted onto the `xmpp` mapping before it is read; an
//! `xmpp` that is not a mapping is refused before any secret is looked
//! for). The process environment is not passed. The text is written to a
//! private temporary directory; every relative path in it (`secret_file`,
//! `state_dir`) resolves against the file's directory, never the working
//! directory, which is left alone: libFuzzer's own relative paths (inputs
//! to replay, `-dict=`) must keep working.
#![no_main]

use fieldbridge::config::{Purpose, load_with_env};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

const SECRET: &str = "fuzz-secret";

/// The file the input is written to, in a directory of this process's own.
fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("fieldbridge-fuzz-config.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("a private temporary directory");
        dir.join("gateway.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = file();
    std::fs::write(path, data).expect("write the input");
    let env = [("FIELDBRIDGE__XMPP__SECRET".to_owned(), SECRET.to_owned())];
    match load_with_env(path, env, Purpose::Check) {
        Ok(cfg) => {
            assert_eq!(cfg.secret, SECRET, "the secret came from somewhere else");
            let report = fieldbridge::check::render_tree(&cfg);
            assert!(report.contains("configuration is valid"));
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error without a problem");
            let _ = errors.to_string();
        }
    }
});
