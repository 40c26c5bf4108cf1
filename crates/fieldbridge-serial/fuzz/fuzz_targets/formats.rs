//! Arbitrary text through every line format and the NMEA parser, and every
//! field it yields through every point type: errors are fine, panics are not.
#![no_main]

use fieldbridge_core::ValueKind;
use fieldbridge_serial::config::{FormatKind, SerialDevice, SerialPoint};
use fieldbridge_serial::format::{Parser, convert};
use fieldbridge_serial::nmea;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn device(format: FormatKind, pattern: Option<&str>) -> SerialDevice {
    SerialDevice {
        format,
        prefix: None,
        separator: None,
        assign: None,
        pattern: pattern.map(str::to_owned),
        request: None,
        write: None,
    }
}

/// Built once: compiling the regex per input would make the fuzzer crawl.
fn parsers() -> &'static [Parser] {
    static PARSERS: OnceLock<Vec<Parser>> = OnceLock::new();
    PARSERS.get_or_init(|| {
        [
            device(FormatKind::KeyValue, None),
            device(FormatKind::Json, None),
            device(FormatKind::Csv, None),
            device(FormatKind::Regex, Some(r"v=(?P<v>\S+)")),
            device(FormatKind::Nmea, None),
        ]
        .iter()
        .filter_map(|d| Parser::new(d).ok())
        .collect()
    })
}

fuzz_target!(|text: &str| {
    let _ = nmea::parse(text);
    let points = [
        SerialPoint {
            key: Some("T".into()),
            ..Default::default()
        },
        SerialPoint {
            pointer: Some("/a/0".into()),
            ..Default::default()
        },
        SerialPoint {
            column: Some(1),
            ..Default::default()
        },
        SerialPoint {
            capture: Some("v".into()),
            ..Default::default()
        },
        SerialPoint {
            nmea: Some("GGA.latitude".into()),
            ..Default::default()
        },
        SerialPoint {
            nmea: Some("MWV.wind_speed".into()),
            ..Default::default()
        },
    ];
    for parser in parsers() {
        let Ok(record) = parser.parse(text) else {
            continue;
        };
        for p in &points {
            if let Some(raw) = record.field(p) {
                for kind in [
                    ValueKind::Float,
                    ValueKind::Int,
                    ValueKind::Bool,
                    ValueKind::Text,
                ] {
                    let _ = convert(raw.clone(), kind);
                }
            }
        }
    }
});
