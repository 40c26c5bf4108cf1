//! Arbitrary bytes as an MQTT message payload through payload extraction:
//! every representative point (JSON pointers of each type, the whole
//! payload of each type, custom on/off words) and timestamp pointers.
//! Errors are fine, panics are not; a value that comes out obeys its
//! point's type, and reading twice gives the same answer.
#![no_main]

use fieldbridge_core::{Value, ValueKind};
use fieldbridge_mqtt::config::{DEFAULT_MAX_PAYLOAD, MqttPoint};
use fieldbridge_mqtt::payload::{Cause, Payload, Pointer, command_payload};
use fieldbridge_mqtt::topic::CommandTopic;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn point(json: Option<&str>, kind: ValueKind) -> MqttPoint {
    MqttPoint {
        json: json.map(|j| Pointer::parse(j).expect("a valid pointer")),
        kind,
        ..Default::default()
    }
}

/// Built once, outside the per-input closure.
fn points() -> &'static [MqttPoint] {
    static POINTS: OnceLock<Vec<MqttPoint>> = OnceLock::new();
    POINTS.get_or_init(|| {
        use ValueKind::*;
        let mut points = vec![
            // JSON pointers, Tasmota-like, and into arrays, escaped keys, the root.
            point(Some("/ENERGY/Power"), Float),
            point(Some("/ENERGY/Power"), Int),
            point(Some("/POWER"), Bool),
            point(Some("/Name"), Text),
            point(Some("/a/0"), Float),
            point(Some("/a~1b/c~0d"), Int),
            point(Some(""), Float),
            point(Some(""), Text),
            // The whole payload.
            point(None, Float),
            point(None, Int),
            point(None, Bool),
            point(None, Text),
        ];
        let words = |w: &[&str]| Some(w.iter().map(|s| (*s).to_owned()).collect());
        for json in [None, Some("/state")] {
            points.push(MqttPoint {
                json: json.map(|j| Pointer::parse(j).expect("a valid pointer")),
                kind: Bool,
                true_values: words(&["OPEN_DOOR", "1"]),
                false_values: words(&["closed_door", ""]),
                command_topic: Some(CommandTopic::parse("cmnd/door/STATE").expect("a valid topic")),
                payload: Some(r#"{"state": "{value}"}"#.into()),
                ..Default::default()
            });
        }
        for p in &points {
            p.check().expect("the fuzz points are valid points");
        }
        points
    })
}

const TIMESTAMPS: &[&str] = &["/Time", "/t", "/a/0", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    // Mostly the default limit; sometimes one byte too few, or exactly enough.
    let max = match flags % 4 {
        0 => raw.len().saturating_sub(1),
        1 => raw.len(),
        _ => DEFAULT_MAX_PAYLOAD,
    };
    let too_large = raw.len() > max;
    let mut payload = Payload::new(raw, max);
    // The order of reads matters (JSON is parsed by the first that needs it).
    if flags & 4 != 0 {
        for ptr in TIMESTAMPS {
            timestamp(&mut payload, ptr, too_large);
        }
    }
    for p in points() {
        let first = payload.value(p);
        assert_eq!(first, payload.value(p), "a second read differs");
        match first {
            Ok(v) => {
                assert!(!too_large, "a payload over the limit gave {v:?}");
                match (&v, p.kind) {
                    (Value::Float(f), ValueKind::Float) => assert!(f.is_finite(), "{f}"),
                    (Value::Int(_), ValueKind::Int)
                    | (Value::Bool(_), ValueKind::Bool)
                    | (Value::Text(_), ValueKind::Text) => {}
                    (v, kind) => panic!("a {kind} point gave {v:?}"),
                }
                if p.json.is_none() && p.kind == ValueKind::Text {
                    assert_eq!(
                        Some(&v),
                        std::str::from_utf8(raw)
                            .ok()
                            .map(|s| Value::Text(s.into()))
                            .as_ref()
                    );
                }
                let _ = command_payload(&v, p);
            }
            Err(f) => {
                assert_eq!(too_large, f.cause() == Cause::TooLarge, "{f:?}");
                if f.cause() == Cause::NotText {
                    assert!(
                        std::str::from_utf8(raw).is_err(),
                        "UTF-8 refused as not text"
                    );
                }
            }
        }
    }
    for ptr in TIMESTAMPS {
        timestamp(&mut payload, ptr, too_large);
    }
});

fn timestamp(payload: &mut Payload<'_>, ptr: &str, too_large: bool) {
    let ptr = Pointer::parse(ptr).expect("a valid pointer");
    match payload.timestamp(&ptr) {
        Ok(Some(_)) | Ok(None) => assert!(!too_large),
        Err(f) => assert_eq!(too_large, f.cause() == Cause::TooLarge, "{f:?}"),
    }
}
