//! The JSON Schema of `gateway.yaml`, for editors (completion, hover
//! documentation, red squiggles) and for checking files without the
//! gateway. `fieldbridge schema` prints it; the repository keeps a copy in
//! `gateway.schema.json`, which the shipped `gateway.yaml` names on its
//! first line for yaml-language-server.
//!
//! Each section's schema comes from the structs that read it (their `///`
//! docs become descriptions). The loader reads a device's keys into two
//! structs, core's and the adapter's, from one flat mapping; the schema does
//! the same merge here, one device shape per adapter kind.
//!
//! What the schema cannot say: which connection a device names (so which
//! of the device shapes applies) and the checks the loader makes across
//! keys (a Modbus point has exactly one address, a CSV device's points need
//! a `column`, ...). `fieldbridge check` remains the full check.

use fieldbridge_core::{DeviceSettings, PointId, PointSettings};
use fieldbridge_xmpp::XmppConfig;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::kinds::KINDS;
use super::model::{GatewaySection, HttpListenSection};

/// The JSON Schema dialect the schema is written in: draft 7 is the one
/// editors' YAML plugins understand best.
pub const DIALECT: &str = "http://json-schema.org/draft-07/schema#";

/// One device shape: the adapter's own device and point keys, shared by
/// the kinds whose devices are the same structs (Modbus TCP and RTU).
struct DeviceShape {
    /// Names the shape (`modbus` for both Modbus kinds).
    name: &'static str,
    /// Which connection kinds it serves, for the description.
    kinds: String,
    device: Value,
    point: Value,
}

/// The schema of `T`, everything inline (no `$ref`), without the root's
/// `$schema` and `title`.
pub(super) fn schema_of<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft07().with(|s| s.inline_subschemas = true);
    let generator = SchemaGenerator::new(settings);
    let mut value = generator.into_root_schema_for::<T>().to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        obj.remove("definitions");
        obj.remove("$defs");
    }
    value
}

/// A map keyed by ids (`connections`, `devices`, `points`), each value
/// following `item`.
fn id_map(description: &str, item: Value) -> Value {
    json!({
        "description": description,
        "type": ["object", "null"],
        "propertyNames": schema_of::<PointId>(),
        "additionalProperties": item,
    })
}

/// `item`, or nothing after the colon when it has no required keys
/// (`simulator:` and `pump:` alone mean "no settings").
fn or_null_if_optional(item: Value) -> Value {
    let required = item
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if required {
        item
    } else {
        json!({ "anyOf": [item, { "type": "null" }] })
    }
}

/// Core's keys and the adapter's in one object, as the loader reads them
/// from one mapping. A key both know (none today) must satisfy both.
fn merge(core: &Value, adapter: &Value, description: String) -> Value {
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    for part in [core, adapter] {
        if let Some(props) = part.get("properties").and_then(Value::as_object) {
            for (key, schema) in props {
                match properties.remove(key) {
                    Some(before) => {
                        properties.insert(key.clone(), json!({ "allOf": [before, schema] }));
                    }
                    None => {
                        properties.insert(key.clone(), schema.clone());
                    }
                }
            }
        }
        if let Some(req) = part.get("required").and_then(Value::as_array) {
            for r in req {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
        }
    }
    let mut out = json!({
        "description": description,
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        out["required"] = Value::Array(required);
    }
    out
}

/// The description of `v`, or "".
fn description(v: &Value) -> &str {
    v.get("description").and_then(Value::as_str).unwrap_or("")
}

/// "a, b or c".
fn either(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// The device shapes of [`KINDS`], in the order their first kind comes.
fn shapes() -> Vec<DeviceShape> {
    let mut out: Vec<DeviceShape> = Vec::new();
    for k in KINDS {
        if out.iter().any(|s| s.name == k.shape()) {
            continue;
        }
        let kinds: Vec<&str> = KINDS
            .iter()
            .filter(|o| o.shape() == k.shape())
            .map(|o| o.name())
            .collect();
        out.push(DeviceShape {
            name: k.shape(),
            kinds: either(&kinds),
            device: k.device_schema(),
            point: k.point_schema(),
        });
    }
    out
}

/// The whole `gateway.yaml` schema.
pub fn gateway_schema() -> Value {
    let connection_kinds: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            json!({
                "title": k.name(),
                "type": "object",
                "properties": { k.name(): or_null_if_optional(k.connection_schema()) },
                "required": [k.name()],
                "additionalProperties": false,
            })
        })
        .collect();
    let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
    let connections = id_map(
        &format!(
            "`connections:` the transports devices are reached through, by id. Each is a \
             mapping with exactly one kind: {}.",
            either(&names)
        ),
        json!({ "oneOf": connection_kinds }),
    );

    let core_device = schema_of::<DeviceSettings>();
    let mut core_point = schema_of::<PointSettings>();
    // serde's alias is invisible to schemars: the old key of `label`, so
    // that editors do not flag configurations that still use it.
    core_point["properties"]["name"] = json!({
        "deprecated": true,
        "description": "The old key of `label`; still read.",
        "type": ["string", "null"],
    });
    let device_shapes: Vec<Value> = shapes()
        .into_iter()
        .map(|s| {
            let point = merge(
                &core_point,
                &s.point,
                format!(
                    "A point of a device on a {} connection. {} {}",
                    s.kinds,
                    description(&core_point),
                    description(&s.point)
                ),
            );
            let mut device = merge(
                &core_device,
                &s.device,
                format!(
                    "A device on a {} connection. {} {}",
                    s.kinds,
                    description(&core_device),
                    description(&s.device)
                ),
            );
            device["title"] = json!(format!("{} device", s.name));
            device["properties"]["points"] = json!({
                "description": "The device's points, by id (at least one).",
                "type": "object",
                "minProperties": 1,
                "propertyNames": schema_of::<PointId>(),
                "additionalProperties": or_null_if_optional(point),
            });
            let required = device["required"].as_array_mut();
            match required {
                Some(r) => r.push(json!("points")),
                None => device["required"] = json!(["points"]),
            }
            device
        })
        .collect();
    let devices = id_map(
        "`devices:` every device, by id (the localpart of its XMPP address). A device \
         names its `connection`; its keys are core's (name, connection, poll, stale_after, \
         history, summary, points) and those of its connection's kind.",
        json!({ "anyOf": device_shapes }),
    );

    let mut schema = json!({
        "$schema": DIALECT,
        "title": "fieldbridge gateway.yaml",
        "description": "The configuration of a fieldbridge gateway. Generated by \
                        `fieldbridge schema`; `fieldbridge check` checks everything, \
                        including what a schema cannot express.",
        "type": "object",
        "properties": {
            "gateway": schema_of::<GatewaySection>(),
            "xmpp": schema_of::<XmppConfig>(),
            "metrics": metrics_schema(),
            "connections": connections,
            "devices": devices,
            "dashboard": schema_of::<crate::dashboard::DashboardSection>(),
            "alerts": schema_of::<fieldbridge_xmpp::AlertsConfig>(),
        },
        "required": ["xmpp"],
        "additionalProperties": false,
    });
    widen_text(&mut schema);
    schema
}

/// `metrics:`: an HTTP listener, or nothing (off).
fn metrics_schema() -> Value {
    let mut listener = schema_of::<HttpListenSection>();
    listener["description"] = json!(
        "`metrics:` serves Prometheus `/metrics` and `/healthz` on this address \
         (off when absent)."
    );
    json!({ "anyOf": [listener, { "type": "null" }] })
}

/// The loader reads a number or a boolean where it expects text (`name:
/// 2024`, `secret: 123456`), as YAML writers expect: free text in the schema
/// accepts them too. Text with a shape (a pattern, a fixed set of words)
/// stays text.
fn widen_text(schema: &mut Value) {
    match schema {
        Value::Object(obj) => {
            let shaped = ["pattern", "const", "enum", "format"]
                .iter()
                .any(|k| obj.contains_key(*k));
            if !shaped && let Some(t) = obj.get_mut("type") {
                match t {
                    Value::String(s) if s == "string" => {
                        *t = json!(["string", "number", "boolean"]);
                    }
                    Value::Array(types)
                        if types.len() == 2
                            && types.contains(&json!("string"))
                            && types.contains(&json!("null")) =>
                    {
                        *t = json!(["string", "number", "boolean", "null"]);
                    }
                    _ => {}
                }
            }
            for (key, value) in obj.iter_mut() {
                // `propertyNames` are always text: map keys.
                if key != "propertyNames" {
                    widen_text(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(widen_text),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_that_share_a_device_shape_share_its_structs() {
        for s in shapes() {
            for k in KINDS.iter().filter(|k| k.shape() == s.name) {
                assert_eq!(k.device_schema(), s.device, "{} devices", k.name());
                assert_eq!(k.point_schema(), s.point, "{} points", k.name());
            }
        }
    }

    #[test]
    fn lists_read_as_words() {
        assert_eq!(either(&["a"]), "a");
        assert_eq!(either(&["a", "b"]), "a or b");
        assert_eq!(either(&["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn core_and_adapter_keys_do_not_overlap() {
        let keys = |v: &Value| -> Vec<String> {
            v["properties"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let core_device = keys(&schema_of::<DeviceSettings>());
        let core_point = keys(&schema_of::<PointSettings>());
        for s in shapes() {
            for k in keys(&s.device) {
                assert!(!core_device.contains(&k), "{} device key {k}", s.name);
            }
            for k in keys(&s.point) {
                assert!(!core_point.contains(&k), "{} point key {k}", s.name);
            }
        }
    }

    #[test]
    fn no_references_are_left() {
        let text = gateway_schema().to_string();
        assert!(!text.contains("$ref"), "{text}");
    }
}
