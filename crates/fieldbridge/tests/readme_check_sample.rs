//! The README's sample `check` error is the real one: the README's sample
//! configuration, with the typo the README names, run through the real
//! `fieldbridge check`, prints exactly the block the README shows.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::path::Path;
use std::process::Command;

/// Marks the README's block of `check` output (an HTML comment, not shown).
const MARKER: &str = "<!-- The real output: crates/fieldbridge/tests/readme_check_sample.rs";

/// The lines of the first fenced block at or after line `from`, without
/// its fences.
fn fenced_after<'a>(lines: &[&'a str], from: usize) -> Vec<&'a str> {
    let start = from
        + lines[from..]
            .iter()
            .position(|l| l.starts_with("```"))
            .expect("a fenced block follows");
    let len = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("```"))
        .expect("the block is closed");
    lines[start + 1..start + 1 + len].to_vec()
}

#[test]
fn the_readme_sample_error_is_what_check_prints() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let config_at = lines
        .iter()
        .position(|l| *l == "## gateway.yaml")
        .expect("README has a `## gateway.yaml` section");
    let config = fenced_after(&lines, config_at).join("\n") + "\n";
    assert_eq!(
        config.matches("signal: sine").count(),
        1,
        "the sample has one `signal: sine` to mistype:\n{config}"
    );
    let broken = config.replace("signal: sine", "signal: sin");

    let shown_at = lines
        .iter()
        .position(|l| l.starts_with(MARKER))
        .expect("README marks its sample `check` output");
    let shown = fenced_after(&lines, shown_at);
    let (command, output) = shown.split_first().unwrap();
    assert_eq!(*command, "$ fieldbridge check -c gateway.yaml");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), broken).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_fieldbridge"))
        .args(["check", "-c", "gateway.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    let printed = String::from_utf8(run.stdout).unwrap() + &String::from_utf8(run.stderr).unwrap();
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        output,
        "README.md's sample `check` output is out of date; this is the real one:\n{printed}"
    );
}
