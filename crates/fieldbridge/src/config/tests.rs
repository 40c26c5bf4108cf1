use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use super::*;
use fieldbridge_core::device::DEFAULT_STALE_AFTER;
use fieldbridge_core::simulator::{self, Simulator, SimulatorPoint};
use fieldbridge_core::{PointSettings, ValueKind};
use fieldbridge_mqtt::Mqtt;

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<GatewayConfig, ConfigErrors> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    load_with_env(file.path(), env, Purpose::Run)
}

const BASE: &str =
    "xmpp: { component: gw.localhost, secret: s }\nconnections: { demo: { simulator: {} } }\n";

#[test]
fn env_overrides_replace_values_and_keep_other_positions() {
    let text = format!(
        "{BASE}devices:\n  d:\n    connection: demo\n    poll: 1s\n    points:\n      p: {{ signal: sine, bogus: 1 }}\n"
    );
    let err = load_text(&text, &[("FIELDBRIDGE__DEVICES__D__POLL", "2s")]).unwrap_err();
    let only: Vec<_> = err.iter().collect();
    assert_eq!(only.len(), 1, "{err}");
    assert!(
        only[0]
            .to_string()
            .contains(":8:26: devices.d.points.p.bogus: unknown key `bogus`"),
        "{err}"
    );
    let text = format!(
        "{BASE}devices:\n  d:\n    connection: demo\n    poll: 1s\n    points:\n      p: {{ signal: sine }}\n"
    );
    let cfg = load_text(&text, &[("FIELDBRIDGE__DEVICES__D__POLL", "2s")]).unwrap();
    let d = cfg.directory.device("d").unwrap();
    assert_eq!(d.settings.poll, Some(Duration::from_secs(2)));
}

#[test]
fn the_secret_can_come_from_the_environment_only() {
    let text = "xmpp: { component: gw.localhost }\nconnections: { demo: { simulator: {} } }\ndevices: { d: { connection: demo, points: { p: { signal: toggle } } } }\n";
    assert!(load_text(text, &[]).is_err());
    let cfg = load_text(text, &[("FIELDBRIDGE__XMPP__SECRET", "from-env")]).unwrap();
    assert_eq!(cfg.secret, "from-env");
    // Variables without our prefix are ignored.
    assert!(load_text(text, &[("OTHER__XMPP__SECRET", "x")]).is_err());
}

#[test]
fn a_secret_file_is_read_relative_to_the_config_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.secret"), "  hunter2\n").unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        "xmpp: { component: gw.localhost, secret_file: c.secret }\nconnections: { demo: { simulator: {} } }\ndevices: { d: { connection: demo, points: { p: { signal: toggle } } } }\n",
    )
    .unwrap();
    let cfg = load_with_env(&file, Vec::new(), Purpose::Run).unwrap();
    assert_eq!(cfg.secret, "hunter2");
    assert_eq!(cfg.gateway.state_dir, dir.path().join("state"));
}

#[test]
fn check_tolerates_an_unreadable_secret_file_but_run_does_not() {
    let text = "xmpp: { component: gw.localhost, secret_file: /nonexistent/c.secret }\nconnections: { demo: { simulator: {} } }\ndevices: { d: { connection: demo, points: { p: { signal: toggle } } } }\n";
    assert!(load_text(text, &[]).is_err());
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let cfg = load_with_env(file.path(), Vec::new(), Purpose::Check).unwrap();
    assert_eq!(cfg.notes.len(), 1, "{:?}", cfg.notes);
}

/// The problems `check` reports for `secret_file: <secret_file>`.
fn check_secret_file(secret_file: &str) -> Vec<String> {
    let text = format!(
        "xmpp:\n  component: gw.localhost\n  secret_file: {secret_file}\nconnections: {{ demo: {{ simulator: {{}} }} }}\ndevices: {{ d: {{ connection: demo, points: {{ p: {{ signal: toggle }} }} }} }}\n"
    );
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let err = load_with_env(file.path(), Vec::new(), Purpose::Check).unwrap_err();
    lines(&err)
}

#[test]
fn a_secret_file_that_is_not_a_regular_file_is_refused_even_by_check() {
    let got = check_secret_file("/dev/zero");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with(
            ":3:16: xmpp.secret_file: /dev/zero is a character device, not a regular file"
        ),
        "{got:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let got = check_secret_file(&fifo.display().to_string());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with(&format!(
            ":3:16: xmpp.secret_file: {} is a FIFO, not a regular file",
            fifo.display()
        )),
        "{got:?}"
    );
}

#[test]
fn a_secret_file_larger_than_a_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.secret");
    std::fs::write(&big, vec![b'x'; 4097]).unwrap();
    let got = check_secret_file(&big.display().to_string());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with(&format!(
            ":3:16: xmpp.secret_file: {} is larger than 4 KiB: is this the secret?",
            big.display()
        )),
        "{got:?}"
    );
    // Exactly the limit is still a secret.
    std::fs::write(&big, vec![b'x'; 4096]).unwrap();
    let text = format!(
        "xmpp: {{ component: gw.localhost, secret_file: {} }}\nconnections: {{ demo: {{ simulator: {{}} }} }}\ndevices: {{ d: {{ connection: demo, points: {{ p: {{ signal: toggle }} }} }} }}\n",
        big.display()
    );
    assert_eq!(load_text(&text, &[]).unwrap().secret.len(), 4096);
}

#[test]
fn a_configuration_that_is_not_a_regular_file_is_refused() {
    let err = load_with_env(Path::new("/dev/zero"), Vec::new(), Purpose::Check).unwrap_err();
    assert_eq!(
        lines(&err),
        ["/dev/zero: the configuration is a character device, not a regular file"]
    );
}

#[test]
fn simulator_devices_get_the_default_poll_and_staleness() {
    let text = format!(
        "{BASE}devices:\n  d:\n    connection: demo\n    points:\n      p: {{ signal: toggle }}\n"
    );
    let cfg = load_text(&text, &[]).unwrap();
    let d = cfg.directory.device("d").unwrap();
    assert_eq!(d.settings.poll, Some(simulator::DEFAULT_POLL));
    assert_eq!(d.stale_after(), Some(simulator::DEFAULT_POLL * 3));
    assert_eq!(d.points.values().next().unwrap().kind, ValueKind::Bool);
}

#[test]
fn staleness_defaults_follow_the_kind_of_device() {
    let text = "xmpp: { component: gw.localhost, secret: s }
connections:
  demo: { simulator: {} }
  line: { serial: { port: /dev/ttyUSB0 } }
  plc: { modbus_tcp: { address: \"192.0.2.1:502\" } }
  broker: { mqtt: { url: \"mqtt://127.0.0.1\" } }
devices:
  sim: { connection: demo, poll: 4s, points: { p: { signal: toggle } } }
  streamed: { connection: line, format: key_value, points: { t: { key: t } } }
  polled: { connection: plc, points: { t: { input: 0 } } }
  plug: { connection: broker, topic: tele/plug/SENSOR, points: { w: { json: /Power } } }
  lwt:
    connection: broker
    topic: tele/lwt/SENSOR
    availability: { topic: tele/lwt/LWT }
    points: { w: { json: /Power } }
  lwt-timed:
    connection: broker
    topic: tele/timed/SENSOR
    availability: { topic: tele/timed/LWT }
    stale_after: 2h
    points: { w: { json: /Power } }
";
    let cfg = load_text(text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let stale = |id: &str| cfg.directory.device(id).unwrap().stale_after();
    // Polled: three poll periods, the configured one or the kind's.
    assert_eq!(stale("sim"), Some(Duration::from_secs(12)));
    assert_eq!(
        stale("polled"),
        Some(fieldbridge_modbus::config::DEFAULT_POLL * 3)
    );
    assert_eq!(stale("streamed"), Some(DEFAULT_STALE_AFTER));
    // MQTT: a few missed reports; with availability, that says.
    assert_eq!(
        stale("plug"),
        Some(fieldbridge_mqtt::kind::DEFAULT_STALE_AFTER)
    );
    assert_eq!(stale("lwt"), None);
    assert_eq!(stale("lwt-timed"), Some(Duration::from_secs(2 * 3600)));
}

fn lines(err: &ConfigErrors) -> Vec<String> {
    err.iter().map(ToString::to_string).collect()
}

#[test]
fn every_bad_device_is_reported_not_just_the_first() {
    let text = format!(
        "{BASE}devices:\n  a:\n    connection: demo\n    points: {{ p: {{ signal: sin }} }}\n  b:\n    connection: demo\n    poll: soon\n    points: {{ p: {{ signal: toggle }} }}\n  c:\n    connection: demo\n    points: {{ p: {{ signal: toggle, unti: x }} }}\n"
    );
    let err = load_text(&text, &[]).unwrap_err();
    let got = lines(&err);
    assert_eq!(got.len(), 3, "{err}");
    assert!(
        got[0].contains(
            ":6:28: devices.a.points.p.signal: unknown value `sin`, did you mean `sine`?"
        ),
        "{err}"
    );
    assert!(
        got[1].contains(":9:11: devices.b.poll: invalid duration \"soon\""),
        "{err}"
    );
    assert!(
        got[2]
            .contains(":13:36: devices.c.points.p.unti: unknown key `unti`, did you mean `unit`?"),
        "{err}"
    );
    assert!(err.to_string().ends_with("3 problems found"), "{err}");
}

#[test]
fn keys_of_core_and_adapter_share_a_mapping_and_unknown_ones_are_reported_once() {
    // `period` is the simulator's, `poll` core's; `perod` is neither and is
    // reported once, with a suggestion taken from the adapter's keys.
    let text = format!(
        "{BASE}devices:\n  a:\n    connection: demo\n    poll: 1s\n    period: 10s\n    perod: 5s\n    points: {{ p: {{ signal: sine, range: [0, 1], unit: C, rnage: 1 }} }}\n"
    );
    let err = load_text(&text, &[]).unwrap_err();
    let got = lines(&err);
    assert_eq!(got.len(), 2, "{err}");
    assert!(
        got[0].contains("devices.a.perod: unknown key `perod`, did you mean `period`?"),
        "{err}"
    );
    assert!(
        got[1].contains("devices.a.points.p.rnage: unknown key `rnage`, did you mean `range`?"),
        "{err}"
    );
}

#[test]
fn unknown_keys_far_from_any_known_list_the_known_ones() {
    let err = load_text(&format!("{BASE}zzz: 1\n"), &[]).unwrap_err();
    assert!(
        err.to_string().contains(
            ":3:1: zzz: unknown section `zzz`, expected one of: alerts, connections, dashboard, devices, gateway, metrics, xmpp"
        ),
        "{err}"
    );
}

#[test]
fn suggestions_come_only_when_close() {
    assert_eq!(
        de::suggestion("conection", &["connection", "name"]),
        Some("connection".into())
    );
    assert_eq!(de::suggestion("zzz", &["connection", "name"]), None);
}

#[test]
fn fields_of_lists_a_structs_keys() {
    let fields = de::fields_of::<PointSettings>();
    assert!(
        fields.contains(&"deadband") && fields.contains(&"writable"),
        "{fields:?}"
    );
    assert!(de::fields_of::<SimulatorPoint>().contains(&"signal"));
}

#[test]
fn env_text_stays_text_where_text_is_wanted() {
    let text = "xmpp: { component: gw.localhost }\nconnections: { demo: { simulator: {} } }\ndevices: { d: { connection: demo, points: { p: { signal: toggle } } } }\n";
    for secret in ["on", "0123", "1e3", "null"] {
        let cfg = load_text(text, &[("FIELDBRIDGE__XMPP__SECRET", secret)]).unwrap();
        assert_eq!(cfg.secret, secret);
    }
    // ... and is read like YAML where a boolean or a number is wanted.
    let cfg = load_text(
        text,
        &[
            ("FIELDBRIDGE__XMPP__SECRET", "s"),
            ("FIELDBRIDGE__DEVICES__D__POINTS__P__WRITABLE", "true"),
            ("FIELDBRIDGE__CONNECTIONS__DEMO__SIMULATOR__SEED", "42"),
            ("FIELDBRIDGE__XMPP__ACCESS__READ", "[localhost, \"*\"]"),
        ],
    )
    .unwrap();
    let p = cfg
        .directory
        .device("d")
        .unwrap()
        .points
        .values()
        .next()
        .unwrap()
        .clone();
    assert!(p.settings.writable);
    assert_eq!(cfg.xmpp.access.read, vec!["localhost", "*"]);
    let sim = cfg.connections[0].kind.of_kind::<Simulator>();
    assert_eq!(sim.expect("a simulator connection").settings.seed, Some(42));
}

#[test]
fn env_errors_name_the_variable_as_spelled() {
    let text = format!(
        "{BASE}devices: {{ d: {{ connection: demo, points: {{ p: {{ signal: toggle }} }} }} }}\n"
    );
    let err = load_text(&text, &[("FIELDBRIDGE__devices__D__poll", "soon")]).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "environment variable FIELDBRIDGE__devices__D__poll: devices.d.poll: invalid duration"
        ),
        "{err}"
    );
}

#[test]
fn devices_of_a_broken_or_unsupported_connection_are_checked_not_misreported() {
    let text = "xmpp: { component: gw.localhost, secret: s }\nconnections:\n  demo: { simulator: { seed: x } }\n  plc: { modbus_tcp: {} }\ndevices:\n  a: { connection: demo, points: { p: { signal: sin } } }\n  b: { connection: plc, unit: 1, poll: soon, points: { t: { holding: 1 } } }\n";
    let err = load_text(text, &[]).unwrap_err();
    let all = err.to_string();
    assert!(all.contains("connections.demo.simulator.seed"), "{all}");
    assert!(
        all.contains("devices.a.points.p.signal: unknown value `sin`"),
        "{all}"
    );
    assert!(all.contains("devices.b.poll: invalid duration"), "{all}");
    assert!(!all.contains("unknown connection"), "{all}");
    assert!(!all.contains("holding"), "{all}");
    assert_eq!(err.len(), 4, "{all}");
}

#[test]
fn a_device_is_never_dropped_silently() {
    // `connection: 5` is the connection "5", which does not exist.
    let text = format!(
        "{BASE}devices: {{ d: {{ connection: 5, points: {{ p: {{ signal: toggle }} }} }} }}\n"
    );
    let err = load_text(&text, &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("devices.d.connection: unknown connection `5`"),
        "{err}"
    );
}

#[test]
fn an_mqtt_password_can_come_from_the_environment() {
    let text = "xmpp: { component: gw.localhost, secret: s }\nconnections: { broker: { mqtt: { url: \"mqtt://127.0.0.1\", username: gw } } }\ndevices: { plug: { connection: broker, topic: t, points: { p: {} } } }\n";
    let password = |cfg: &GatewayConfig| {
        let kind = &cfg.connections[0].kind;
        match kind.of_kind::<Mqtt>() {
            Some(mqtt) => mqtt.settings.password.clone(),
            None => panic!("{}", kind.name()),
        }
    };
    assert_eq!(password(&load_text(text, &[]).unwrap()), None);
    let cfg = load_text(
        text,
        &[(
            "FIELDBRIDGE__CONNECTIONS__BROKER__MQTT__PASSWORD",
            "from env",
        )],
    )
    .unwrap();
    assert_eq!(password(&cfg).as_deref(), Some("from env"));
}

/// Loads an MQTT connection naming `ca_file: <ca_file>` for `purpose`.
fn load_mqtt_ca(ca_file: &str, purpose: Purpose) -> Result<GatewayConfig, ConfigErrors> {
    let text = format!(
        "xmpp: {{ component: gw.localhost, secret: s }}\nconnections: {{ broker: {{ mqtt: {{ url: \"mqtts://127.0.0.1\", ca_file: {ca_file} }} }} }}\ndevices: {{ plug: {{ connection: broker, topic: t, points: {{ p: {{}} }} }} }}\n"
    );
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    load_with_env(file.path(), Vec::new(), purpose)
}

#[test]
fn mqtt_files_are_resolved_and_read_when_the_file_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "pem").unwrap();
    let text = "xmpp: { component: gw.localhost, secret: s }\nconnections: { broker: { mqtt: { url: \"mqtts://127.0.0.1\", ca_file: ca.pem } } }\ndevices: { plug: { connection: broker, topic: t, points: { p: {} } } }\n";
    std::fs::write(dir.path().join("gateway.yaml"), text).unwrap();
    let cfg = load_with_env(&dir.path().join("gateway.yaml"), Vec::new(), Purpose::Run).unwrap();
    let mqtt = cfg.connections[0].kind.of_kind::<Mqtt>().unwrap();
    assert_eq!(
        mqtt.settings.ca_file.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
}

#[test]
fn a_missing_mqtt_file_is_a_problem_even_for_check() {
    for purpose in [Purpose::Run, Purpose::Check] {
        let err = load_mqtt_ca("/nonexistent/ca.pem", purpose).unwrap_err();
        let got = lines(&err);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("connections.broker.mqtt.ca_file: cannot read /nonexistent/ca.pem"),
            "{got:?}"
        );
    }
}

#[test]
fn an_mqtt_file_the_system_refuses_is_a_note_for_check_only() {
    // Not a directory: neither missing nor readable, as "permission denied"
    // would be for another user (tests may run as root).
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().join("ca.pem");
    let path = path.to_str().unwrap();
    assert!(load_mqtt_ca(path, Purpose::Run).is_err());
    let cfg = load_mqtt_ca(path, Purpose::Check).unwrap();
    assert_eq!(cfg.notes.len(), 1, "{:?}", cfg.notes);
    let note = format!("{path} (connections.broker.mqtt.ca_file) cannot be read here");
    assert!(cfg.notes[0].starts_with(&note), "{:?}", cfg.notes);
}
