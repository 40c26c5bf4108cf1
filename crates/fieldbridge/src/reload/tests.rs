use std::path::Path;

use super::*;
use crate::config::{Purpose, load_with_env};

const BASE: &str = "xmpp: { component: gw.localhost, server: 127.0.0.1:5347, secret: s, access: { read: [localhost] } }
connections:
  demo: { simulator: {} }
  plc: { modbus_tcp: { address: 127.0.0.1:502 } }
devices:
  a: { connection: demo, points: { p: { signal: sine } } }
  c: { connection: demo, points: { p: { signal: toggle } } }
  boiler: { connection: plc, unit: 1, points: { t: { holding: 1 } } }
";

fn applied(dir: &Path, text: &str) -> Applied {
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, text).unwrap();
    let cfg = load_with_env(&file, Vec::new(), Purpose::Run).unwrap_or_else(|e| panic!("{e}"));
    Applied::of(&cfg)
}

fn diff(old: &str, new: &str) -> Diff {
    let dir = tempfile::tempdir().unwrap();
    Diff::between(&applied(dir.path(), old), &applied(dir.path(), new))
}

#[test]
fn the_same_file_changes_nothing() {
    let d = diff(BASE, BASE);
    assert_eq!(d, Diff::default());
    assert_eq!(d.to_string(), "nothing changed");
}

#[test]
fn a_device_added_and_one_removed_restart_their_connection_only() {
    let new = BASE
        .replace(
            "  c: { connection: demo, points: { p: { signal: toggle } } }\n",
            "  b: { connection: demo, points: { p: { signal: ramp } } }\n",
        )
        .replace("read: [localhost]", "read: [localhost, example.org]");
    let d = diff(BASE, &new);
    assert_eq!(d.devices_added, [DeviceId::new("b").unwrap()]);
    assert_eq!(d.devices_removed, [DeviceId::new("c").unwrap()]);
    assert!(d.devices_changed.is_empty());
    assert_eq!(d.connections_changed, [ConnectionId::new("demo").unwrap()]);
    assert!(d.stops(&ConnectionId::new("demo").unwrap()));
    assert!(!d.stops(&ConnectionId::new("plc").unwrap()));
    assert_eq!(
        d.to_string(),
        "+1 device (b), -1 device (c), ~1 connection (demo), access changed"
    );
}

#[test]
fn a_changed_point_changes_its_device_and_connection() {
    let new = BASE.replace("t: { holding: 1 }", "t: { holding: 1, scale: 0.1 }");
    let d = diff(BASE, &new);
    assert_eq!(d.devices_changed, [DeviceId::new("boiler").unwrap()]);
    assert_eq!(d.connections_changed, [ConnectionId::new("plc").unwrap()]);
    assert_eq!(d.to_string(), "~1 device (boiler), ~1 connection (plc)");
    // The connection's own settings alone: the connection, no device.
    let new = BASE.replace("127.0.0.1:502", "127.0.0.1:1502");
    let d = diff(BASE, &new);
    assert!(d.devices_changed.is_empty());
    assert_eq!(d.to_string(), "~1 connection (plc)");
}

#[test]
fn connections_added_and_removed_with_their_devices() {
    let new = BASE
        .replace(
            "  boiler: { connection: plc, unit: 1, points: { t: { holding: 1 } } }\n",
            "  x: { connection: more, points: { p: { signal: sine } } }\n  y: { connection: more, points: { p: { signal: sine } } }\n",
        )
        .replace(
            "  plc: { modbus_tcp: { address: 127.0.0.1:502 } }\n",
            "  more: { simulator: {} }\n",
        );
    let d = diff(BASE, &new);
    assert_eq!(
        d.to_string(),
        "+2 devices (x, y), -1 device (boiler), +1 connection (more), -1 connection (plc)"
    );
}

#[test]
fn what_needs_a_restart_is_named_and_keeps_its_running_value() {
    let dir = tempfile::tempdir().unwrap();
    let old = applied(dir.path(), BASE);
    let text = BASE
        .replace("server: 127.0.0.1:5347", "server: 127.0.0.1:5348")
        .replace("secret: s", "secret: hunter2, status_interval: 5s");
    let new = applied(dir.path(), &text);
    let d = Diff::between(&old, &new);
    assert_eq!(
        d.to_string(),
        "status_interval changed; needs a restart for: xmpp.server, xmpp.secret"
    );
    // Running on: the next reload of the same file still says so, and
    // nothing else.
    let running = old.apply(new);
    let again = Diff::between(&running, &applied(dir.path(), &text));
    assert_eq!(
        again.to_string(),
        "nothing changed; needs a restart for: xmpp.server, xmpp.secret"
    );
    assert!(!format!("{running:?}").contains("hunter2"), "{running:?}");
}

#[test]
fn a_listener_moved_needs_a_restart() {
    let text = format!("{BASE}metrics: {{ listen: 127.0.0.1:9464 }}\n");
    let moved = text.replace("9464", "9465");
    assert_eq!(
        diff(&text, &moved).to_string(),
        "nothing changed; needs a restart for: metrics"
    );
    assert_eq!(
        diff(BASE, &text).to_string(),
        "nothing changed; needs a restart for: metrics"
    );
}

#[test]
fn a_changed_alarm_changes_its_device_but_restarts_no_connection() {
    let new = BASE.replace(
        "t: { holding: 1 }",
        "t: { holding: 1, alarm: { above: 85 } }",
    );
    let d = diff(BASE, &new);
    assert_eq!(d.devices_changed, [DeviceId::new("boiler").unwrap()]);
    assert!(d.connections_changed.is_empty(), "{d:?}");
    assert!(d.alarms);
    assert_eq!(d.to_string(), "~1 device (boiler), alarms changed");
    let new = BASE.replace(
        "boiler: { connection: plc, unit: 1,",
        "boiler: { connection: plc, unit: 1, offline_alert: 2m,",
    );
    assert_eq!(
        diff(BASE, &new).to_string(),
        "~1 device (boiler), alarms changed"
    );
    // With another change of the device: its connection restarts too.
    let new = BASE.replace(
        "t: { holding: 1 }",
        "t: { holding: 1, scale: 0.1, alarm: { above: 85 } }",
    );
    assert_eq!(
        diff(BASE, &new).to_string(),
        "~1 device (boiler), ~1 connection (plc), alarms changed"
    );
}

#[test]
fn a_changed_alerts_section_applies_at_once() {
    let new = format!("{BASE}alerts: {{ to: [alice@localhost], room: r@conference.localhost }}\n");
    let d = diff(BASE, &new);
    assert!(d.alerts);
    assert_eq!(d.to_string(), "alerts changed");
    assert!(d.needs_restart.is_empty());
}
