//! Golden configuration cases: `tests/config/<case>/gateway.yaml` (with an
//! optional `env` file of `KEY=VALUE` overrides, blank lines and `#`
//! comments ignored) must produce exactly `expected.err` (an invalid file)
//! or `expected.tree` (a valid one). A case may instead hold a `source`
//! file naming the configuration to load, relative to the case (the shipped
//! example is checked that way). The configuration's directory is cut from
//! the output, so that files read `gateway.yaml` as users see them.
//! `UPDATE_GOLDEN=1 cargo test -p fieldbridge --test config_golden`
//! rewrites the expectations; review the diff before committing it.

use std::path::{Path, PathBuf};

use fieldbridge::check::render_tree;
use fieldbridge::config::{Purpose, load_with_env};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config")
}

fn env_of(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("env"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The configuration a case loads: its `gateway.yaml`, or the file its
/// `source` names.
fn config_of(dir: &Path) -> Option<PathBuf> {
    if let Ok(source) = std::fs::read_to_string(dir.join("source")) {
        return Some(dir.join(source.trim()));
    }
    let file = dir.join("gateway.yaml");
    file.exists().then_some(file)
}

fn render(dir: &Path) -> (bool, String) {
    let file = config_of(dir).expect("a case has a configuration");
    let parent = file.parent().expect("a file has a directory");
    let prefix = format!("{}/", parent.display());
    match load_with_env(&file, env_of(dir), Purpose::Run) {
        Ok(cfg) => (true, render_tree(&cfg).replace(&prefix, "")),
        Err(errors) => (false, format!("{errors}\n").replace(&prefix, "")),
    }
}

#[test]
fn golden_cases_produce_exactly_the_expected_output() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/config exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| config_of(p).is_some())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 14, "only {} golden cases", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let (ok, got) = render(dir);
        let (expected_file, stale_file) = if ok {
            ("expected.tree", "expected.err")
        } else {
            ("expected.err", "expected.tree")
        };
        if update {
            std::fs::write(dir.join(expected_file), &got).expect("write expectation");
            let _ = std::fs::remove_file(dir.join(stale_file));
            continue;
        }
        match std::fs::read_to_string(dir.join(expected_file)) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}: {expected_file} differs\n--- expected\n{want}--- got\n{got}",
                dir.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {expected_file}; the case produced:\n{got}",
                dir.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_names_a_position_and_a_key_path() {
    for dir in std::fs::read_dir(cases_dir()).expect("tests/config exists") {
        let dir = dir.expect("readable dir").path();
        let Ok(expected) = std::fs::read_to_string(dir.join("expected.err")) else {
            continue;
        };
        let lines: Vec<&str> = expected.lines().collect();
        let (summary, errors) = lines.split_last().expect("not empty");
        assert!(summary.contains("problem"), "{}", dir.display());
        for line in errors {
            let located = line.starts_with("gateway.yaml:")
                || line.starts_with("environment variable FIELDBRIDGE__");
            assert!(located, "{}: no position in {line:?}", dir.display());
        }
    }
}

#[test]
fn the_shipped_gateway_yaml_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gateway.yaml");
    let env = [("FIELDBRIDGE__XMPP__SECRET".to_owned(), "test".to_owned())];
    let cfg = load_with_env(&file, env, Purpose::Run).unwrap_or_else(|e| panic!("{e}"));
    let tree = render_tree(&cfg);
    assert!(tree.contains("device boiler@gw.localhost"), "{tree}");
    assert!(tree.contains("point temperature: float [°C]"), "{tree}");
    assert_eq!(cfg.directory.len(), 2);
}

#[test]
fn fieldbridge_check_prints_the_same_and_exits_3_on_errors() {
    for (case, code) in [
        ("several-errors-at-once", 3),
        ("bad-env-override", 3),
        ("env-override-ok", 0),
    ] {
        let dir = cases_dir().join(case);
        let out = output_within_30_s(
            std::process::Command::new(env!("CARGO_BIN_EXE_fieldbridge"))
                .args(["check", "-c", "gateway.yaml"])
                .current_dir(&dir)
                .env_clear()
                .envs(env_of(&dir)),
        );
        assert_eq!(out.status.code(), Some(code), "{case}: {out:?}");
        let (printed, expected) = if code == 0 {
            (out.stdout, "expected.tree")
        } else {
            (out.stderr, "expected.err")
        };
        let want = std::fs::read_to_string(dir.join(expected)).expect("expectation");
        assert_eq!(String::from_utf8_lossy(&printed), want, "{case}");
    }
}

/// Runs the command to its end; fails if it is still running after 30 s.
fn output_within_30_s(cmd: &mut std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Its output is a few lines: it fits the pipes while we wait.
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("killed");
            panic!("{cmd:?} still running after 30 s (killed): {out:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().expect("the output")
}
