use std::io::Write as _;

use super::*;
use fieldbridge_core::simulator;

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

#[test]
fn simulator_devices_get_the_default_poll_and_staleness() {
    let text = format!(
        "{BASE}devices:\n  d:\n    connection: demo\n    points:\n      p: {{ signal: toggle }}\n"
    );
    let cfg = load_text(&text, &[]).unwrap();
    let d = cfg.directory.device("d").unwrap();
    assert_eq!(d.settings.poll, Some(simulator::DEFAULT_POLL));
    assert_eq!(d.stale_after(), simulator::DEFAULT_POLL * 3);
    assert_eq!(d.points.values().next().unwrap().kind, ValueKind::Bool);
}
