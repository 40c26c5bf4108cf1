//! `fieldbridge check`: what the gateway understood of its configuration.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::duration;
use fieldbridge_core::simulator::{Signal, SimulatorDevice, SimulatorPoint};
use fieldbridge_core::{DeviceSpec, PointId};
use fieldbridge_modbus::config::{ModbusDevice, ModbusPoint, Parity};
use fieldbridge_mqtt::config::{DEFAULT_MAX_DEVICES, MqttConnection, MqttDevice, MqttPoint};
use fieldbridge_serial::config::{SerialDevice, SerialPoint};

use crate::config::{ConnectionKind, GatewayConfig};

/// Renders connections → devices → points as an indented tree.
pub fn render_tree(cfg: &GatewayConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: configuration is valid", cfg.source.display());
    let _ = writeln!(
        out,
        "gateway {} (state in {})",
        cfg.gateway.id,
        cfg.gateway.state_dir.display()
    );
    let _ = writeln!(
        out,
        "xmpp component {} via {}; read: {}; control: {}",
        cfg.xmpp.component,
        cfg.xmpp.server,
        list(&cfg.xmpp.access.read),
        list(&cfg.xmpp.access.control)
    );
    for c in &cfg.connections {
        let (extra, devices) = match &c.kind {
            ConnectionKind::Simulator { settings, devices } => (
                settings
                    .seed
                    .map(|s| format!(", seed {s}"))
                    .unwrap_or_default(),
                devices.iter().map(simulator_device).collect::<Vec<_>>(),
            ),
            ConnectionKind::Serial { settings, devices } => (
                format!(", {} at {} baud", settings.port.display(), settings.baud),
                devices.iter().map(serial_device).collect(),
            ),
            ConnectionKind::ModbusTcp { settings, devices } => {
                let mut extra = format!(", {}", settings.address);
                if let Some(t) = settings.timeout {
                    let _ = write!(extra, ", timeout {}", duration::format(t));
                }
                if settings.max_in_flight > 1 {
                    let _ = write!(extra, ", {} requests in flight", settings.max_in_flight);
                }
                (extra, devices.iter().map(modbus_device).collect())
            }
            ConnectionKind::ModbusRtu { settings, devices } => {
                let parity = match settings.parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                let mut extra = format!(
                    ", {} at {} baud {}{parity}{}",
                    settings.port.display(),
                    settings.baud,
                    settings.data_bits,
                    settings.stop_bits
                );
                if let Some(t) = settings.timeout {
                    let _ = write!(extra, ", timeout {}", duration::format(t));
                }
                if let Some(d) = settings.inter_request_delay {
                    let _ = write!(extra, ", inter_request_delay {}", duration::format(d));
                }
                (extra, devices.iter().map(modbus_device).collect())
            }
            ConnectionKind::Mqtt { settings, devices } => (
                mqtt_connection(settings, &cfg.gateway.id, c.id.as_str()),
                devices.iter().map(mqtt_device).collect(),
            ),
        };
        let _ = writeln!(out, "connection {} ({}){extra}", c.id, c.kind.name());
        if devices.is_empty() {
            let _ = writeln!(out, "  (no devices)");
        }
        for (spec, device_extra, point_extras) in devices {
            if cfg.directory.device(spec.id.as_str()).is_some() {
                render_device(&mut out, cfg, spec, &device_extra, &point_extras);
            } else {
                // A rule that creates devices at run time (MQTT template).
                let mut rule = String::new();
                render_device(&mut rule, cfg, spec, &device_extra, &point_extras);
                let device = format!("  device {}@{}", spec.id, cfg.xmpp.component);
                let named = format!(
                    "  rule {} (makes <id>@{} at run time)",
                    spec.id, cfg.xmpp.component
                );
                out.push_str(&rule.replacen(&device, &named, 1));
            }
        }
    }
    for note in &cfg.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "{} connection(s), {} device(s), {} point(s)",
        cfg.connections.len(),
        cfg.directory.len(),
        cfg.directory.point_count()
    );
    out
}

/// A device as `render_device` takes it: core's spec, the adapter's
/// device details, and the adapter's details per point.
type Described<'a> = (&'a DeviceSpec, String, BTreeMap<PointId, String>);

fn simulator_device(d: &AdapterDevice<SimulatorDevice, SimulatorPoint>) -> Described<'_> {
    let mut extra = String::new();
    if let Some(p) = d.config.period {
        let _ = write!(extra, ", period {}", duration::format(p));
    }
    if let Some(o) = &d.config.outage {
        let _ = write!(
            extra,
            ", outage {} every {}",
            duration::format(o.duration),
            duration::format(o.every)
        );
    }
    let points = d
        .points
        .iter()
        .map(|(id, sim)| {
            let mut line = format!(", {}", signal_name(sim.signal));
            if let Some([lo, hi]) = sim.range {
                let _ = write!(line, " {lo}..{hi}");
            }
            if let Some(v) = &sim.value {
                let _ = write!(line, " {v}");
            }
            (id.clone(), line)
        })
        .collect();
    (&d.spec, extra, points)
}

fn serial_device(d: &AdapterDevice<SerialDevice, SerialPoint>) -> Described<'_> {
    let c = &d.config;
    let mut extra = format!(", format {}", c.format.name());
    if let Some(p) = &c.prefix {
        let _ = write!(extra, ", prefix {p:?}");
    }
    if let Some(r) = &c.request {
        let _ = write!(extra, ", request {:?}", r.send);
    }
    if let Some(w) = &c.write {
        let _ = write!(extra, ", write {:?}", w.template);
    }
    let points = d
        .points
        .iter()
        .map(|(id, p)| {
            let at = match (&p.key, &p.pointer, p.column, &p.capture, &p.nmea) {
                (Some(k), ..) => format!("key {k}"),
                (_, Some(ptr), ..) => format!("pointer {ptr}"),
                (_, _, Some(col), ..) => format!("column {col}"),
                (.., Some(cap), _) => format!("capture {cap}"),
                (.., Some(n)) => format!("nmea {n}"),
                _ => String::new(),
            };
            (id.clone(), format!(", {at}"))
        })
        .collect();
    (&d.spec, extra, points)
}

fn modbus_device(d: &AdapterDevice<ModbusDevice, ModbusPoint>) -> Described<'_> {
    let c = &d.config;
    let spans: Vec<fieldbridge_modbus::plan::Span> = d
        .points
        .values()
        .filter_map(|p| {
            Some(fieldbridge_modbus::plan::Span {
                at: p.location().ok()?,
                width: p.width(),
            })
        })
        .collect();
    let limits = fieldbridge_modbus::plan::Limits {
        max_registers: c.max_registers,
        max_bits: c.max_bits,
        max_gap: c.max_gap,
        max_bit_gap: c.max_bit_gap,
    };
    let reads = fieldbridge_modbus::plan::plan(&spans, limits).len();
    let extra = format!(
        ", unit {}, order {}, max_gap {}, {reads} read(s) per poll",
        c.unit,
        c.order.name(),
        c.max_gap
    );
    let points = d
        .points
        .iter()
        .map(|(id, p)| {
            let mut line = String::new();
            if let Ok(at) = p.location() {
                let _ = write!(line, ", {} {}", at.table, at.address);
                if !at.table.is_bits() {
                    let _ = write!(line, " {}", p.data_type().name());
                }
            }
            if let Some(c) = p.count {
                let _ = write!(line, "[{c}]");
            }
            if let Some(b) = p.bit {
                let _ = write!(line, " bit {b}");
            }
            if let Some(o) = p.order {
                let _ = write!(line, " {}", o.name());
            }
            if let Some(names) = &p.names {
                let list: Vec<String> = names.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(line, " enum {{{}}}", list.join(", "));
            }
            if let Some(min) = p.min {
                let _ = write!(line, ", min {min}");
            }
            if let Some(max) = p.max {
                let _ = write!(line, ", max {max}");
            }
            (id.clone(), line)
        })
        .collect();
    (&d.spec, extra, points)
}

fn mqtt_connection(s: &MqttConnection, gateway: &str, connection: &str) -> String {
    let mut extra = format!(
        ", {}, MQTT {}, client id {}",
        s.url,
        s.protocol().name(),
        s.client_id(gateway, connection)
    );
    extra.push_str(if s.clean_session {
        ", clean session"
    } else {
        ", persistent session"
    });
    if let Some(u) = &s.username {
        let _ = write!(extra, ", user {u}");
    }
    if let Some(ca) = &s.ca_file {
        let _ = write!(extra, ", CA {}", ca.display());
    }
    if s.client_cert.is_some() {
        extra.push_str(", client certificate");
    }
    extra
}

fn mqtt_device(d: &AdapterDevice<MqttDevice, MqttPoint>) -> Described<'_> {
    let c = &d.config;
    let mut extra = String::new();
    if let Some(t) = &c.topic {
        if t.is_template() {
            let _ = write!(
                extra,
                ", template {t} (up to {} devices)",
                c.max_devices.unwrap_or(DEFAULT_MAX_DEVICES)
            );
        } else {
            let _ = write!(extra, ", topic {t}");
        }
    }
    if let Some(a) = &c.availability {
        let _ = write!(
            extra,
            ", availability {} ({}/{})",
            a.topic, a.online, a.offline
        );
    }
    if let Some(ts) = &c.timestamp {
        let _ = write!(extra, ", timestamp {ts}");
    }
    let points = d
        .points
        .iter()
        .map(|(id, p)| {
            let mut line = String::new();
            match &p.json {
                Some(ptr) => {
                    let _ = write!(line, ", json {ptr}");
                }
                None => line.push_str(", whole payload"),
            }
            if let Some(t) = &p.topic {
                let _ = write!(line, " of {t}");
            }
            if let Some(t) = &p.command_topic {
                let _ = write!(
                    line,
                    ", writes {:?} to {t}",
                    p.payload.as_deref().unwrap_or("{value}")
                );
            }
            (id.clone(), line)
        })
        .collect();
    (&d.spec, extra, points)
}

fn render_device(
    out: &mut String,
    cfg: &GatewayConfig,
    spec: &DeviceSpec,
    device_extra: &str,
    point_extras: &BTreeMap<PointId, String>,
) {
    let mut line = format!("  device {}@{}", spec.id, cfg.xmpp.component);
    if let Some(name) = &spec.settings.name {
        let _ = write!(line, " \"{name}\"");
    }
    if let Some(poll) = spec.settings.poll {
        let _ = write!(line, ", poll {}", duration::format(poll));
    }
    let _ = write!(
        line,
        ", stale after {}",
        duration::format(spec.stale_after())
    );
    let _ = writeln!(out, "{line}{device_extra}");
    for (id, p) in &spec.points {
        let mut line = format!("    point {id}");
        let s = &p.settings;
        if let Some(name) = &s.name {
            let _ = write!(line, " \"{name}\"");
        }
        let _ = write!(line, ": {}", p.kind);
        if let Some(u) = &s.unit {
            let _ = write!(line, " [{u}]");
        }
        if let Some(extra) = point_extras.get(id) {
            line.push_str(extra);
        }
        for (name, v) in [
            ("scale", s.scale),
            ("offset", s.offset),
            ("deadband", s.deadband),
        ] {
            if let Some(v) = v {
                let _ = write!(line, ", {name} {v}");
            }
        }
        if let Some(d) = s.decimals {
            let _ = write!(line, ", decimals {d}");
        }
        for (name, v) in [
            ("min_interval", s.min_interval),
            ("max_interval", s.max_interval),
        ] {
            if let Some(v) = v {
                let _ = write!(line, ", {name} {}", duration::format(v));
            }
        }
        if s.writable {
            line.push_str(", writable");
        }
        let _ = writeln!(out, "{line}");
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nobody".to_owned()
    } else {
        items.join(", ")
    }
}

/// A signal as written in `gateway.yaml`.
fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Sine => "sine",
        Signal::Ramp => "ramp",
        Signal::RandomWalk => "random_walk",
        Signal::Toggle => "toggle",
        Signal::Constant => "constant",
    }
}
