//! The shipped Modbus examples must keep working. `gateway.yaml` keeps its
//! Modbus examples commented out (the demo runs on simulated devices only);
//! uncommented as a user would, they must load, with the devices and
//! points the comments promise. `deploy/examples/sdm630.yaml`, an Eastron
//! SDM630 meter, must load as shipped and read a meter's floats from a
//! Modbus RTU server.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fieldbridge::check::render_tree;
use fieldbridge::config::{Purpose, load};
use fieldbridge_core::adapter::AdapterContext;
use fieldbridge_core::{Bus, EventKind, Quality, Value, normalize};
use fieldbridge_modbus_testserver::{Bank, ModbusServer};
use tokio_util::sync::CancellationToken;

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

fn sdm630() -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/sdm630.yaml");
    std::fs::read_to_string(file).unwrap()
}

#[test]
fn the_sdm630_example_loads_as_shipped() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/sdm630.yaml");
    let cfg = load(&file, Purpose::Check).unwrap_or_else(|e| panic!("{e}"));
    let tree = render_tree(&cfg);
    for line in [
        "connection meter-bus (modbus_rtu), /dev/ttyUSB0 at 9600 baud 8N1",
        "point voltage_l1: float [V], input 0 f32",
        "point power: float [W], input 52 f32",
        "point frequency: float [Hz], input 70 f32",
        "point import_energy: float [kWh], input 72 f32",
        "point total_energy: float [kWh], input 342 f32",
        "1 connection(s), 1 device(s), 15 point(s)",
    ] {
        assert!(tree.contains(line), "{line:?} not in:\n{tree}");
    }
}

#[tokio::test]
async fn the_sdm630_example_reads_a_meters_floats_over_rtu() {
    // What the meter holds: input register (Modicon 3xxxx) → value, each an
    // f32 in two registers, high word first; and what is published, after
    // the point's `decimals`.
    let meter: [(u16, &str, f32, f64); 15] = [
        (30001, "voltage_l1", 230.5, 230.5),
        (30003, "voltage_l2", 231.25, 231.3),
        (30005, "voltage_l3", 229.75, 229.8),
        (30007, "current_l1", 5.5, 5.5),
        (30009, "current_l2", 4.25, 4.25),
        (30011, "current_l3", 3.0, 3.0),
        (30013, "power_l1", 1265.0, 1265.0),
        (30015, "power_l2", 980.0, 980.0),
        (30017, "power_l3", 690.0, 690.0),
        (30053, "power", 2935.0, 2935.0),
        (30063, "power_factor", 0.75, 0.75),
        (30071, "frequency", 50.0, 50.0),
        (30073, "import_energy", 12345.5, 12345.5),
        (30075, "export_energy", 321.25, 321.25),
        (30343, "total_energy", 12666.75, 12666.75),
    ];
    let bank = Bank::new(1);
    for (register, _, v, _) in meter {
        let bits = v.to_bits();
        bank.set_input(register - 30001, &[(bits >> 16) as u16, bits as u16]);
    }
    let server = ModbusServer::rtu(bank).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    let text = sdm630().replace(
        "port: /dev/ttyUSB0",
        &format!("port: {}", server.dev().display()),
    );
    std::fs::write(&file, text).unwrap();
    // Check: the shipped secret file is not on this machine.
    let mut cfg = load(&file, Purpose::Check).unwrap_or_else(|e| panic!("{e}"));
    let ctx = cfg.build_context();
    let connection = cfg.connections.remove(0);
    let adapter = connection.kind.build(connection.id, &ctx);

    let bus = Bus::new(64);
    let mut sub = bus.subscribe("test");
    let (events, engine) = normalize::spawn(std::sync::Arc::clone(&cfg.directory), bus);
    let (_commands, commands_rx) = tokio::sync::mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(adapter.run(AdapterContext {
        events,
        commands: commands_rx,
        shutdown: shutdown.clone(),
    }));

    let first = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = sub.recv().await.unwrap();
            if let EventKind::Readings(samples) = e.kind {
                return samples;
            }
        }
    })
    .await
    .expect("the meter is read within 30 s");
    let got: BTreeMap<String, (Value, Quality)> = first
        .into_iter()
        .map(|s| {
            (
                s.reading.point.as_str().to_owned(),
                (s.reading.value, s.reading.quality),
            )
        })
        .collect();
    let want: BTreeMap<String, (Value, Quality)> = meter
        .iter()
        .map(|(_, id, _, v)| ((*id).to_owned(), (Value::Float(*v), Quality::Good)))
        .collect();
    assert_eq!(got, want);

    shutdown.cancel();
    running.await.unwrap();
    engine.await.unwrap();
}
