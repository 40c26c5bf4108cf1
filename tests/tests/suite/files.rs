//! The files the gateway reads and writes: what the configuration names
//! must be a regular file of sane size (refused at once otherwise, never a
//! hang), and what the gateway keeps is private to its user.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fieldbridge_e2e::client::{XmppUser, is_presence};
use fieldbridge_e2e::fieldbridge_bin;
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::prosody::Prosody;

/// How long `check` may take to refuse a file.
const PROMPTLY: Duration = Duration::from_secs(1);

/// Writes a gateway.yaml in `dir` whose `xmpp.secret_file` is `secret_file`
/// and runs `fieldbridge check` on it; fails if it has not exited within
/// [`PROMPTLY`] (the child is killed first).
fn check_with_secret_file(dir: &Path, secret_file: &Path) -> Output {
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "xmpp:\n  component: gw.localhost\n  secret_file: {}\n\
             connections: {{ demo: {{ simulator: {{}} }} }}\n\
             devices: {{ d: {{ connection: demo, points: {{ p: {{ signal: toggle }} }} }} }}\n",
            secret_file.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(fieldbridge_bin())
        .arg("check")
        .arg("-c")
        .arg(&config)
        .env_remove("FIELDBRIDGE__XMPP__SECRET")
        .env_remove("FIELDBRIDGE__XMPP__SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > PROMPTLY {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`fieldbridge check` with secret_file {} still running after {PROMPTLY:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                secret_file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `check` failed with exit code 3 and said `expected` about
/// `xmpp.secret_file` at its position in the file.
fn assert_refused(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!(":3:16: xmpp.secret_file: {expected}")),
        "expected {expected:?} in:\n{stderr}"
    );
}

#[test]
fn check_refuses_dev_zero_as_the_secret_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_with_secret_file(dir.path(), Path::new("/dev/zero"));
    assert_refused(&out, "/dev/zero is a character device, not a regular file");
}

#[test]
fn check_refuses_a_fifo_as_the_secret_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("component.secret");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo {}", fifo.display());
    let out = check_with_secret_file(dir.path(), &fifo);
    assert_refused(
        &out,
        &format!("{} is a FIFO, not a regular file", fifo.display()),
    );
}

#[test]
fn check_refuses_a_secret_file_too_large_for_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("component.secret");
    std::fs::write(&big, vec![b'x'; 64 * 1024]).unwrap();
    let out = check_with_secret_file(dir.path(), &big);
    assert_refused(
        &out,
        &format!(
            "{} is larger than 4 KiB: is this the secret?",
            big.display()
        ),
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_state_directory_and_its_files_are_private_to_the_gateway() {
    let prosody = Prosody::start().await.expect("prosody starts");
    prosody.register("alice", "pw").expect("user registered");
    let devices = "  boiler:\n    connection: sim\n    poll: 200ms\n    points:\n      temperature: { signal: sine, range: [20, 30] }\n";
    let mut gateway = Gateway::start(&prosody, &["alice@localhost"], devices)
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}\nprosody log:\n{}", prosody.log()));
    let mut alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    // A subscriber is what the gateway saves in its store.
    alice
        .subscribe_presence("boiler@gw.localhost")
        .await
        .unwrap();
    alice
        .expect("the boiler online", Duration::from_secs(15), |e| {
            is_presence(e, "boiler@gw.localhost", None)
        })
        .await
        .unwrap();

    let status = gateway.stop().await.unwrap();
    assert!(status.success(), "{status:?}\n{}", gateway.log());
    let state = gateway.state_dir();
    let state_mode = mode(&state);
    assert_eq!(
        state_mode,
        0o700,
        "{} is {state_mode:03o}, not 700",
        state.display()
    );
    // Everything it keeps (subscribers, every reading) is in one file.
    let path = state.join("state.redb");
    let file_mode = mode(&path);
    assert_eq!(
        file_mode,
        0o600,
        "{} is {file_mode:03o}, not 600",
        path.display()
    );
    alice.close().await;
}
