//! The shipped `gateway.yaml` keeps its Modbus examples commented out (the
//! demo runs on simulated devices only); uncommented as a user would, they
//! must load, with the devices and points the comments promise.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::path::Path;

use fieldbridge::check::render_tree;
use fieldbridge::config::{Purpose, load};

/// Uncomments the blocks that start with `  # <one of starts>:` and go on
/// while lines are indented comments (`  #   ...`); comments inside the
/// block stay comments.
fn uncomment(text: &str, starts: &[&str]) -> String {
    let mut out = Vec::new();
    let mut active = false;
    for line in text.lines() {
        if starts
            .iter()
            .any(|s| line.starts_with(&format!("  # {s}:")))
        {
            active = true;
        } else if active && !line.starts_with("  #   ") {
            active = false;
        }
        match line.strip_prefix("  # ") {
            Some(body) if active && !body.trim_start().starts_with('#') => {
                out.push(format!("  {body}"));
            }
            _ => out.push(line.to_owned()),
        }
    }
    out.join("\n")
}

#[test]
fn the_commented_modbus_examples_load_once_uncommented() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gateway.yaml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        uncomment(&text, &["plc", "rs485", "plc-boiler", "rs485-meter"]),
    )
    .unwrap();
    let cfg = load(&file, Purpose::Check).unwrap_or_else(|e| panic!("{e}"));
    let tree = render_tree(&cfg);
    assert!(
        tree.contains("connection plc (modbus_tcp), 192.168.1.10:502"),
        "{tree}"
    );
    assert!(tree.contains("connection rs485 (modbus_rtu)"), "{tree}");
    assert!(
        tree.contains("point temperature: float [°C], holding 100 i16"),
        "{tree}"
    );
    assert!(
        tree.contains("point energy: int [kWh], input 100 u32"),
        "{tree}"
    );
    assert!(
        tree.contains("3 connection(s), 4 device(s), 16 point(s)"),
        "{tree}"
    );
    // As shipped, they are comments: the demo has the simulator only.
    let cfg = load(&shipped, Purpose::Check).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.connections.len(), 1);
}
