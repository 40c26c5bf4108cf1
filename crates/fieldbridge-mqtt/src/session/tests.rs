//! Starting a session: the files it reads first.

use serde_json::json;

use super::*;

#[test]
fn a_password_file_that_is_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("password");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let settings: MqttConnection = serde_json::from_value(
        json!({ "url": "mqtt://127.0.0.1", "username": "u", "password_file": fifo }),
    )
    .unwrap();
    // The password is read before anything is spawned: no runtime needed.
    let Err(err) = start(&settings, "test") else {
        panic!("a FIFO was accepted as password_file");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "password_file: {} is a FIFO, not a regular file",
            fifo.display()
        )
    );
}
