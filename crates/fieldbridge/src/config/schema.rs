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

use fieldbridge_core::simulator::{SimulatorConnection, SimulatorDevice, SimulatorPoint};
use fieldbridge_core::{DeviceSettings, PointId, PointSettings};
use fieldbridge_modbus::config::{
    ModbusDevice, ModbusPoint, ModbusRtuConnection, ModbusTcpConnection,
};
use fieldbridge_mqtt::config::{MqttConnection, MqttDevice, MqttPoint};
use fieldbridge_serial::config::{SerialConnection, SerialDevice, SerialPoint};
use fieldbridge_xmpp::XmppConfig;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::GatewaySection;

/// The JSON Schema dialect the schema is written in: draft 7 is the one
/// editors' YAML plugins understand best.
pub const DIALECT: &str = "http://json-schema.org/draft-07/schema#";

/// One connection kind: its key, its settings, and the keys its devices
/// and points add to core's.
struct KindSchema {
    /// The key under `connections.<id>`.
    name: &'static str,
    /// `connections.<id>.<name>`.
    connection: Value,
    /// Which device shape its devices take (Modbus TCP and RTU share one).
    devices: &'static str,
}

/// One device shape: the adapter's own device and point keys.
struct DeviceShape {
    /// Names the shape (`modbus` for both Modbus kinds).
    name: &'static str,
    /// Which connection kinds it serves, for the description.
    kinds: &'static str,
    device: Value,
    point: Value,
}

/// The schema of `T`, everything inline (no `$ref`), without the root's
/// `$schema` and `title`.
fn schema_of<T: JsonSchema>() -> Value {
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

fn kinds() -> Vec<KindSchema> {
    vec![
        KindSchema {
            name: "simulator",
            connection: schema_of::<SimulatorConnection>(),
            devices: "simulator",
        },
        KindSchema {
            name: "serial",
            connection: schema_of::<SerialConnection>(),
            devices: "serial",
        },
        KindSchema {
            name: "modbus_tcp",
            connection: schema_of::<ModbusTcpConnection>(),
            devices: "modbus",
        },
        KindSchema {
            name: "modbus_rtu",
            connection: schema_of::<ModbusRtuConnection>(),
            devices: "modbus",
        },
        KindSchema {
            name: "mqtt",
            connection: schema_of::<MqttConnection>(),
            devices: "mqtt",
        },
    ]
}

fn shapes() -> Vec<DeviceShape> {
    vec![
        DeviceShape {
            name: "simulator",
            kinds: "simulator",
            device: schema_of::<SimulatorDevice>(),
            point: schema_of::<SimulatorPoint>(),
        },
        DeviceShape {
            name: "serial",
            kinds: "serial",
            device: schema_of::<SerialDevice>(),
            point: schema_of::<SerialPoint>(),
        },
        DeviceShape {
            name: "modbus",
            kinds: "modbus_tcp or modbus_rtu",
            device: schema_of::<ModbusDevice>(),
            point: schema_of::<ModbusPoint>(),
        },
        DeviceShape {
            name: "mqtt",
            kinds: "mqtt",
            device: schema_of::<MqttDevice>(),
            point: schema_of::<MqttPoint>(),
        },
    ]
}

/// The connection kinds the schema describes, in order.
pub fn kind_names() -> Vec<&'static str> {
    kinds().iter().map(|k| k.name).collect()
}

/// The whole `gateway.yaml` schema.
pub fn gateway_schema() -> Value {
    let connection_kinds: Vec<Value> = kinds()
        .into_iter()
        .map(|k| {
            debug_assert!(shapes().iter().any(|s| s.name == k.devices));
            json!({
                "title": k.name,
                "type": "object",
                "properties": { k.name: or_null_if_optional(k.connection) },
                "required": [k.name],
                "additionalProperties": false,
            })
        })
        .collect();
    let connections = id_map(
        "`connections:` the transports devices are reached through, by id. Each is a \
         mapping with exactly one kind: simulator, serial, modbus_tcp, modbus_rtu or mqtt.",
        json!({ "oneOf": connection_kinds }),
    );

    let core_device = schema_of::<DeviceSettings>();
    let core_point = schema_of::<PointSettings>();
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
         history, points) and those of its connection's kind.",
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
            "connections": connections,
            "devices": devices,
        },
        "required": ["xmpp"],
        "additionalProperties": false,
    });
    widen_text(&mut schema);
    schema
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
    fn describes_every_connection_kind_the_loader_knows() {
        assert_eq!(kind_names(), super::super::adapters::KINDS);
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
