//! The JSON Schema of `gateway.yaml`: the committed `gateway.schema.json`
//! is the generated one, and it accepts every valid example and refuses
//! mistakes a schema can see.

use std::path::{Path, PathBuf};

use fieldbridge::config::schema::gateway_schema;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&gateway_schema()).unwrap_or_else(|e| panic!("invalid schema: {e}"))
}

/// YAML as JSON, the way an editor's YAML plugin sees it.
fn yaml_to_json(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("not YAML: {e}"))
}

/// Every problem the schema finds, one per line.
fn problems(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = root().join("gateway.schema.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = serde_json::to_string_pretty(&gateway_schema()).expect("schema as JSON") + "\n";
    assert!(
        committed == generated,
        "gateway.schema.json is out of date with the config structs; \
         run `cargo run -p fieldbridge -- schema > gateway.schema.json` \
         (that is, `fieldbridge schema > gateway.schema.json`) and commit it"
    );
}

#[test]
fn shipped_gateway_yaml_names_the_schema() {
    let text = std::fs::read_to_string(root().join("gateway.yaml")).expect("gateway.yaml");
    assert_eq!(
        text.lines().next(),
        Some("# yaml-language-server: $schema=./gateway.schema.json")
    );
}

/// The shipped gateway.yaml and every valid golden case (those with an
/// `expected.tree`).
fn valid_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("gateway.yaml")];
    let cases = root().join("tests/config");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cases)
        .expect("tests/config")
        .map(|e| e.expect("entry").path())
        .filter(|d| d.join("expected.tree").exists())
        .collect();
    dirs.sort();
    for dir in dirs {
        let file = match std::fs::read_to_string(dir.join("source")) {
            Ok(source) => dir.join(source.trim()),
            Err(_) => dir.join("gateway.yaml"),
        };
        files.push(file);
    }
    files
}

#[test]
fn schema_accepts_the_shipped_and_every_valid_example() {
    let validator = validator();
    let files = valid_files();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("modbus-valid/gateway.yaml")),
        "{files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let found = problems(&validator, &yaml_to_json(&text));
        if !found.is_empty() {
            failures.push(format!("{}:\n  {}", file.display(), found.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const BASE: &str = "
xmpp: { component: gw.example.org, secret: s }
connections:
  plc: { modbus_tcp: { address: 127.0.0.1:502 } }
  demo: { simulator: }
";

fn refused(extra: &str) -> Vec<String> {
    let doc = yaml_to_json(&format!("{BASE}{extra}"));
    problems(&validator(), &doc)
}

#[test]
fn schema_accepts_the_base_of_the_refusal_cases() {
    let ok = "
devices:
  boiler:
    connection: plc
    name: 2024
    poll: 5s
    points:
      temperature: { holding: 100, type: i16, scale: 0.1, unit: °C, deadband: 0.2 }
      pump: { coil: 5, writable: true }
";
    assert_eq!(refused(ok), Vec::<String>::new());
}

#[test]
fn schema_refuses_an_unknown_key_in_a_point() {
    let bad = "
devices:
  boiler:
    connection: plc
    points:
      temperature: { holding: 100, type: i16, colour: red }
";
    assert!(!refused(bad).is_empty());
}

#[test]
fn schema_refuses_mistakes_it_can_see() {
    let cases = [
        ("unknown section", "xmpp_extra: 1\n"),
        (
            "two kinds in one connection",
            "connections: { x: { simulator: {}, mqtt: { url: mqtt://h } } }\n",
        ),
        (
            "unknown connection kind",
            "connections: { x: { opcua: {} } }\n",
        ),
        (
            "duration without a unit",
            "devices: { d: { connection: plc, poll: 5, points: { p: { coil: 1 } } } }\n",
        ),
        (
            "invalid device id",
            "devices: { Boiler: { connection: plc, points: { p: { coil: 1 } } } }\n",
        ),
        (
            "device without points",
            "devices: { d: { connection: demo } }\n",
        ),
        (
            "unknown signal",
            "devices: { d: { connection: demo, points: { p: { signal: sin } } } }\n",
        ),
        (
            "unknown key in a device",
            "devices: { d: { connection: plc, pol: 5s, points: { p: { coil: 1 } } } }\n",
        ),
        (
            "unknown alarm severity",
            "devices: { d: { connection: demo, points: { p: { signal: sine, \
             alarm: { above: 1, severity: urgent } } } } }\n",
        ),
        (
            "misspelled alarm key",
            "devices: { d: { connection: demo, points: { p: { signal: sine, \
             alarm: { abov: 1 } } } } }\n",
        ),
        (
            "offline_alert without a unit",
            "devices: { d: { connection: demo, offline_alert: 120, points: { p: { signal: sine } } } }\n",
        ),
    ];
    let validator = validator();
    for (what, extra) in cases {
        // Sections given twice: the later one wins in the JSON.
        let text = if extra.starts_with("connections:") {
            format!("xmpp: {{ component: gw.example.org }}\n{extra}")
        } else {
            format!("{BASE}{extra}")
        };
        let found = problems(&validator, &yaml_to_json(&text));
        assert!(!found.is_empty(), "{what}: accepted\n{text}");
    }
}

/// Golden cases whose mistakes are in the shape of the file (unknown keys
/// and kinds, wrong types, invalid ids): the schema sees them too. The
/// others (a missing secret file, a deadband on a bool, a device naming a
/// connection that does not exist) only `fieldbridge check` can see.
#[test]
fn schema_refuses_the_golden_cases_with_shape_mistakes() {
    let validator = validator();
    for case in [
        "alarm-wrong-types",
        "bad-history",
        "connection-shapes",
        "device-on-broken-connection",
        "empty-file",
        "invalid-ids",
        "missing-xmpp-and-points",
        "modbus-mistakes",
        "mqtt-mistakes",
        "serial-mistakes",
        "several-errors-at-once",
        "unknown-connection-kind",
        "unknown-key-suggestion",
        "values-in-words",
        "wrong-type",
    ] {
        let file = root().join("tests/config").join(case).join("gateway.yaml");
        let text = std::fs::read_to_string(&file).expect("readable");
        let doc = serde_saphyr::from_str::<Option<Value>>(&text)
            .unwrap_or_else(|e| panic!("{case}: not YAML: {e}"))
            .unwrap_or(Value::Null);
        assert!(
            !problems(&validator, &doc).is_empty(),
            "{case}: the schema accepts it"
        );
    }
}
