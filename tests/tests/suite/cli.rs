//! The command line as an operator uses it.

use std::process::{Command, Output};
use std::time::Duration;

use fieldbridge_e2e::{fieldbridge_bin, output_within, repo_root};

/// Runs the command to its end, within 30 s.
fn run(cmd: &mut Command) -> Output {
    output_within(cmd, Duration::from_secs(30)).unwrap()
}

#[test]
fn check_prints_the_tree_of_the_shipped_config() {
    let out = run(Command::new(fieldbridge_bin())
        .current_dir(repo_root())
        .args(["check", "-c", "gateway.yaml"])
        .env("FIELDBRIDGE__XMPP__SECRET", "test"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("device boiler@gw.localhost"), "{stdout}");
    assert!(stdout.contains("point temperature"), "{stdout}");
}

#[test]
fn check_refuses_a_bad_config_with_positions_and_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        "xmpp: { component: gw.localhost, secret: s }\nconnections: { demo: { simulator: {} } }\ndevices:\n  d:\n    connection: demo\n    pol: 1s\n    points: { p: { signal: sine } }\n",
    )
    .unwrap();
    let out = run(Command::new(fieldbridge_bin())
        .arg("check")
        .arg("-c")
        .arg(&file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:6:5: devices.d.pol: unknown key `pol`, did you mean `poll`?",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn version_is_printed() {
    let out = run(Command::new(fieldbridge_bin()).arg("--version"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("fieldbridge "));
}

#[test]
fn wrong_usage_exits_2_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["frobnicate"][..],
        &["run", "--no-such-flag"],
        &["run", "--log-format", "xml"],
        &["modbus", "scan", "-a", "100"],
    ] {
        // In an empty directory: nothing may start, whatever is parsed.
        let out = run(Command::new(fieldbridge_bin())
            .current_dir(dir.path())
            .args(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Usage: fieldbridge") || stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_failure_at_run_time_exits_1_and_the_log_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // The state directory cannot be created: a file is in the way.
    std::fs::write(dir.path().join("state"), "not a directory").unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        "gateway: { id: e2e, state_dir: state/inner }\n\
         xmpp: { component: gw.localhost, server: \"127.0.0.1:9\", secret: s, access: { read: [localhost] } }\n\
         connections: { demo: { simulator: {} } }\n\
         devices: { d: { connection: demo, points: { p: { signal: sine } } } }\n",
    )
    .unwrap();
    let out = run(Command::new(fieldbridge_bin())
        .current_dir(dir.path())
        .args(["run", "-c", "gateway.yaml", "--log-format", "json"])
        .env_remove("RUST_LOG"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let failed = stderr
        .lines()
        .find(|l| l.contains("\"gateway failed\""))
        .unwrap_or_else(|| panic!("no 'gateway failed' line: {stderr}"));
    assert!(
        failed.contains("state"),
        "the reason names the state: {failed}"
    );
}
