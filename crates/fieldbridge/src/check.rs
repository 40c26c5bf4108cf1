//! `fieldbridge check`: what the gateway understood of its configuration.

use std::fmt::Write as _;

use fieldbridge_core::duration;
use fieldbridge_core::simulator::Signal;

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
        let mut line = format!("connection {} ({})", c.id, c.kind.name());
        match &c.kind {
            ConnectionKind::Simulator { settings, .. } => {
                if let Some(seed) = settings.seed {
                    let _ = write!(line, ", seed {seed}");
                }
            }
        }
        let _ = writeln!(out, "{line}");
        match &c.kind {
            ConnectionKind::Simulator { devices, .. } => {
                if devices.is_empty() {
                    let _ = writeln!(out, "  (no devices)");
                }
                for d in devices {
                    let spec = &d.spec;
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
                    if let Some(p) = d.config.period {
                        let _ = write!(line, ", period {}", duration::format(p));
                    }
                    if let Some(o) = &d.config.outage {
                        let _ = write!(
                            line,
                            ", outage {} every {}",
                            duration::format(o.duration),
                            duration::format(o.every)
                        );
                    }
                    let _ = writeln!(out, "{line}");
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
                        if let Some(sim) = d.points.get(id) {
                            let _ = write!(line, ", {}", signal_name(sim.signal));
                            if let Some([lo, hi]) = sim.range {
                                let _ = write!(line, " {lo}..{hi}");
                            }
                            if let Some(v) = &sim.value {
                                let _ = write!(line, " {v}");
                            }
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
