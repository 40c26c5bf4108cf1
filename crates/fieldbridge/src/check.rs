//! `fieldbridge check`: what the gateway understood of its configuration.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use fieldbridge_core::duration;
use fieldbridge_core::{DeviceSpec, PointId};

use crate::config::GatewayConfig;

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
    let link = match (&cfg.xmpp.tls, cfg.xmpp.tls_server_name()) {
        (Some(tls), Some(name)) => format!(
            "TLS for {name}, trusting {}",
            tls.ca_file
                .as_deref()
                .map_or("the system's roots".to_owned(), |ca| ca
                    .display()
                    .to_string())
        ),
        _ => "clear text".to_owned(),
    };
    let _ = writeln!(
        out,
        "xmpp component {} via {} ({link}); read: {}; control: {}",
        cfg.xmpp.component,
        cfg.xmpp.server,
        list(&cfg.xmpp.access.read),
        list(&cfg.xmpp.access.control)
    );
    let a = &cfg.alerts;
    if !a.to.is_empty() || a.room.is_some() {
        let room = a.room.as_ref().map_or(String::new(), |r| {
            format!("; room {r} as {}", a.nick_or(&cfg.gateway.id))
        });
        let remind = a.remind.map_or("no reminders".to_owned(), |d| {
            format!(
                "critical ones reminded every {}",
                fieldbridge_core::duration::format(d)
            )
        });
        let _ = writeln!(out, "alerts to {}{room}; {remind}", list(&a.to));
    }
    if let Some(m) = &cfg.metrics {
        let _ = writeln!(
            out,
            "metrics on http://{}/metrics, health on http://{}/healthz",
            m.listen, m.listen
        );
    }
    if let Some(d) = &cfg.dashboard {
        let _ = writeln!(
            out,
            "dashboard on http://{} from {}; WebSocket {}, BOSH {}",
            d.listen,
            d.files.display(),
            d.websocket.as_deref().unwrap_or("(the page asks)"),
            d.bosh.as_deref().unwrap_or("(none)")
        );
    }
    let ctx = cfg.build_context();
    for c in &cfg.connections {
        let (extra, devices) = c.kind.describe(&c.id, &ctx);
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
    match spec.stale_after() {
        Some(after) => {
            let _ = write!(line, ", stale after {}", duration::format(after));
        }
        // What says instead when it is lost (MQTT `availability`) follows.
        None => line.push_str(", never stale by time"),
    }
    if let Some(summary) = &spec.settings.summary {
        let ids: Vec<&str> = summary.iter().map(PointId::as_str).collect();
        let _ = write!(line, ", summary {}", ids.join(", "));
    }
    if let Some(after) = spec.settings.offline_alert {
        let _ = write!(line, ", offline alert after {}", duration::format(after));
    }
    let _ = writeln!(out, "{line}{device_extra}");
    for (id, p) in &spec.points {
        let mut line = format!("    point {id}");
        let s = &p.settings;
        if let Some(label) = &s.label {
            let _ = write!(line, " \"{label}\"");
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
        for (name, v) in [("min", s.min), ("max", s.max)] {
            if let Some(v) = v {
                let _ = write!(line, ", {name} {v}");
            }
        }
        if s.writable {
            line.push_str(", writable");
        }
        if let Some(a) = &s.alarm {
            let _ = write!(line, ", {} alarm", a.severity.name());
            for (name, v) in [
                ("above", a.above),
                ("below", a.below),
                ("hysteresis", a.hysteresis),
            ] {
                if let Some(v) = v {
                    let _ = write!(line, " {name} {v}");
                }
            }
            if let Some(e) = &a.equals {
                let _ = write!(line, " equals {}", e.value());
            }
            if let Some(hold) = a.hold {
                let _ = write!(line, " for {}", duration::format(hold));
            }
            if let Some(text) = &a.text {
                let _ = write!(line, " \"{text}\"");
            }
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
