//! The loader: reads the file, grafts the environment, then each section,
//! connection and device on its own, collecting every problem.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use fieldbridge_core::files::{self, MIB};
use fieldbridge_core::kind::NamedFile;
use fieldbridge_core::{ConnectionId, DeviceId, DeviceSettings, DeviceSpec, Directory};
use fieldbridge_xmpp::{AlertsConfig, XmppConfig};
use jiff::tz::TimeZone;

use super::de::{self, Problems, read, suggestion, unknown_key_message};
use super::env::apply_env;
use super::error::ConfigErrors;
use super::kinds;
use super::model::{
    Connection, GatewayConfig, GatewaySection, GatewaySettings, HttpListen, HttpListenSection,
    default_gateway_id,
};
use super::tree::{self, Key, Kind, Node, Origin, join, locate, null_as_empty_map};
use crate::dashboard::{DashboardSection, DashboardSettings};

/// `gateway.yaml` larger than this is refused (thousands of devices fit).
pub const CONFIG_FILE_LIMIT: u64 = 16 * MIB;

const TOP_KEYS: &[&str] = &[
    "gateway",
    "xmpp",
    "metrics",
    "connections",
    "devices",
    "dashboard",
    "alerts",
];

/// How strictly the secret must be available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// For running: the secret must be readable.
    Run,
    /// For `fieldbridge check`: an unreadable secret file is a note, since
    /// the file is often readable only by the gateway's own user.
    Check,
}

/// Loads and checks `path`, with overrides from the process environment.
pub fn load(path: &Path, purpose: Purpose) -> Result<GatewayConfig, ConfigErrors> {
    load_with_env(path, std::env::vars(), purpose)
}

/// Loads and checks `path` with overrides from `env` (all variables; only
/// those starting with `FIELDBRIDGE__` are used).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    purpose: Purpose,
) -> Result<GatewayConfig, ConfigErrors> {
    let file = path.display().to_string();
    let fail = |origin: Origin, path: &str, message: String| {
        ConfigErrors::new(
            &file,
            vec![de::Problem {
                origin,
                path: path.to_owned(),
                message,
            }],
        )
    };
    let text = files::read_text_limited(path, CONFIG_FILE_LIMIT).map_err(|e| {
        // The message is shown after the file's name: do not repeat it.
        let message = match e.problem() {
            files::Problem::Io(io) => format!("cannot read the configuration: {io}"),
            files::Problem::NotRegular(what) => {
                format!("the configuration is {what}, not a regular file")
            }
            files::Problem::TooLarge(limit) => {
                format!("the configuration is larger than {}", files::size(*limit))
            }
            files::Problem::NotText => "the configuration is not UTF-8 text".to_owned(),
        };
        fail(Origin::Nowhere, "", message)
    })?;
    let mut root = tree::parse(&text).map_err(|e| {
        let origin = e.location().map_or(Origin::Nowhere, |l| Origin::File {
            line: l.line(),
            column: l.column(),
        });
        fail(
            origin,
            "",
            format!("invalid YAML: {}", syntax_message(&e.to_string())),
        )
    })?;
    if matches!(root.kind, Kind::Null) {
        root.kind = Kind::Map(Vec::new());
    }
    let problems = Problems::default();
    apply_env(&mut root, env, &problems);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let loaded = Loader {
        problems: &problems,
        base: &base,
        purpose,
        notes: RefCell::default(),
    }
    .load(&root, path);
    match loaded {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => Err(ConfigErrors::new(&file, problems.into_vec())),
    }
}

/// The parser's message without its own "error: line N column M:" prefix
/// (the position is printed in front already).
fn syntax_message(full: &str) -> &str {
    let first = full.lines().next().unwrap_or(full);
    match first.strip_prefix("error: line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, m)| m),
        None => first,
    }
}

/// One load in progress: where problems and notes go, and what relative
/// paths and file checks depend on.
pub(super) struct Loader<'a> {
    pub(super) problems: &'a Problems,
    /// The configuration's directory: relative paths start there.
    pub(super) base: &'a Path,
    pub(super) purpose: Purpose,
    /// Things worth knowing that do not stop the gateway.
    pub(super) notes: RefCell<Vec<String>>,
}

/// A key under `connections:`, declared even when it has mistakes.
struct Declared {
    /// The key as written.
    name: String,
    /// The key, if it is a valid id.
    id: Option<ConnectionId>,
    /// The connection being loaded, if its kind is one this version runs.
    pending: Option<Box<dyn kinds::PendingConnection>>,
}

impl Loader<'_> {
    fn load(&self, root: &Node, source: &Path) -> Option<GatewayConfig> {
        let Kind::Map(top) = &root.kind else {
            self.problems.push(
                &root.origin,
                "",
                format!(
                    "the configuration must be a mapping with {}, found {}",
                    TOP_KEYS.join(", "),
                    root.kind.describe()
                ),
            );
            return None;
        };
        self.check_keys(top, "", TOP_KEYS, "section");

        let gateway = match root.get("gateway") {
            Some(node) => read::<GatewaySection>(node, "gateway", &[], true, self.problems),
            None => Some(GatewaySection {
                id: default_gateway_id(),
                state_dir: None,
                timezone: None,
            }),
        };
        if let (Some(g), Some(node)) = (&gateway, root.get("gateway"))
            && let Err(e) = DeviceId::new(&g.id)
        {
            let at = node.get("id").unwrap_or(node);
            self.problems.push(
                &at.origin,
                "gateway.id",
                format!("invalid id {:?}: {e}", g.id),
            );
        }

        let time_zone = self.time_zone(root.get("gateway"), gateway.as_ref());

        let (xmpp, secret) = match root.get("xmpp") {
            Some(node) => self.xmpp(node),
            None => {
                self.problems.push(
                    &root.origin,
                    "xmpp",
                    "missing section `xmpp` (the component domain, server and secret)",
                );
                (None, None)
            }
        };

        let alerts = match root.get("alerts") {
            Some(node) => self.alerts(node, xmpp.as_ref()),
            None => Some(AlertsConfig::default()),
        };

        let metrics = match root.get("metrics") {
            Some(node) => self.http_listen(node, "metrics"),
            None => Some(None),
        };
        // `None` inside: the section has mistakes (recorded).
        let dashboard = root.get("dashboard").map(|node| self.dashboard(node));

        let mut connections = self.connections(root.get("connections"));
        let (specs, device_count) = self.devices(root.get("devices"), &mut connections);

        let gateway = gateway?;
        let time_zone = time_zone?;
        let xmpp = xmpp?;
        let secret = secret?;
        let metrics = metrics?;
        let alerts = alerts?;
        let dashboard = match dashboard {
            Some(d) => Some(d?),
            None => None,
        };
        let state_dir = match gateway.state_dir {
            Some(dir) if dir.is_absolute() => dir,
            Some(dir) => self.base.join(dir),
            None => self.base.join("state"),
        };
        let rules: usize = connections
            .iter()
            .filter_map(|c| c.pending.as_ref())
            .map(|p| p.rules())
            .sum();
        let mut out = Vec::new();
        for declared in connections {
            if let (Some(id), Some(pending)) = (declared.id, declared.pending)
                && let Some(kind) = pending.finish()
            {
                out.push(Connection { id, kind });
            }
        }
        if specs.len() + rules != device_count && self.problems.is_empty() {
            // Every path that drops a device records why; this is a safety net.
            self.problems.push(
                &root.origin,
                "devices",
                "internal error: a device was dropped without a reason; please report this",
            );
        }
        Some(GatewayConfig {
            source: source.to_path_buf(),
            gateway: GatewaySettings {
                id: gateway.id,
                state_dir,
                time_zone,
            },
            xmpp,
            alerts,
            secret,
            directory: Arc::new(Directory::new(specs)),
            connections: out,
            dashboard,
            metrics,
            notes: self.notes.take(),
        })
    }

    /// `gateway.timezone` as a zone, or the system's; `None` (with the
    /// problem recorded) for a name the tz database does not know.
    fn time_zone(&self, node: Option<&Node>, gateway: Option<&GatewaySection>) -> Option<TimeZone> {
        let Some(name) = gateway.and_then(|g| g.timezone.as_deref()) else {
            // No TZ and no /etc/localtime means UTC to the C library too.
            return Some(TimeZone::try_system().unwrap_or(TimeZone::UTC));
        };
        match TimeZone::get(name) {
            Ok(zone) => Some(zone),
            Err(_) => {
                let at = node.and_then(|n| n.get("timezone")).or(node);
                let names: Vec<String> =
                    jiff::tz::db().available().map(|n| n.to_string()).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = match suggestion(name, &names) {
                    Some(s) => format!(", did you mean `{s}`?"),
                    None => " (an IANA name such as `Europe/Berlin` or `UTC`)".to_owned(),
                };
                if let Some(at) = at {
                    self.problems.push(
                        &at.origin,
                        "gateway.timezone",
                        format!("unknown time zone `{name}`{hint}"),
                    );
                }
                None
            }
        }
    }

    /// Reports keys outside `known`, and duplicates.
    fn check_keys(&self, entries: &[(Key, Node)], path: &str, known: &[&str], what: &str) {
        let mut seen = HashSet::new();
        for (key, _) in entries {
            let p = join(path, &key.name);
            if !seen.insert(key.name.as_str()) {
                self.problems
                    .push(&key.origin, &p, format!("duplicate {what} `{}`", key.name));
            } else if !known.contains(&key.name.as_str()) {
                self.problems
                    .push(&key.origin, &p, unknown_key_message(what, &key.name, known));
            }
        }
    }

    /// An HTTP listener section (`metrics:`): `Some(None)` when it is
    /// empty (`metrics:` alone: off), `None` when it has problems (recorded).
    fn http_listen(&self, node: &Node, path: &str) -> Option<Option<HttpListen>> {
        if matches!(node.kind, Kind::Null) {
            return Some(None);
        }
        let section = read::<HttpListenSection>(node, path, &[], true, self.problems)?;
        match section.check() {
            Ok(listen) => Some(Some(listen)),
            Err(message) => {
                let at = node.get("listen").unwrap_or(node);
                self.problems
                    .push(&at.origin, &join(path, "listen"), message);
                None
            }
        }
    }

    /// `alerts:`: recipients that may read, a room that is a bare JID.
    /// `alerts:` alone is the same as none.
    fn alerts(&self, node: &Node, xmpp: Option<&XmppConfig>) -> Option<AlertsConfig> {
        if matches!(node.kind, Kind::Null) {
            return Some(AlertsConfig::default());
        }
        let cfg = read::<AlertsConfig>(node, "alerts", &[], true, self.problems)?;
        let problems = cfg.problems(xmpp.map(|x| &x.access));
        for p in &problems {
            let at = locate(node, &p.path).unwrap_or(node);
            self.problems
                .push(&at.origin, &join("alerts", &p.path), p.message.clone());
        }
        problems.is_empty().then_some(cfg)
    }

    fn xmpp(&self, node: &Node) -> (Option<XmppConfig>, Option<String>) {
        let Some(mut cfg) = read::<XmppConfig>(node, "xmpp", &[], true, self.problems) else {
            return (None, None);
        };
        for p in cfg.problems() {
            let at = locate(node, &p.path).unwrap_or(node);
            self.problems
                .push(&at.origin, &join("xmpp", &p.path), p.message);
        }
        // `tls:` with nothing after the colon asks for TLS with the
        // defaults, as `simulator:` does for a connection: never clear text.
        if cfg.tls.is_none()
            && node
                .get("tls")
                .is_some_and(|t| matches!(t.kind, Kind::Null))
        {
            cfg.tls = Some(fieldbridge_xmpp::TlsConfig::default());
        }
        cfg.resolve_paths(self.base);
        if let Some(path) = cfg.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
            let at = locate(node, "tls.ca_file").unwrap_or(node);
            let file = NamedFile {
                key: "ca_file",
                path,
                limit: fieldbridge_tls::PEM_FILE_LIMIT,
                text: false,
                holds: "a PEM file",
            };
            kinds::check_file(self, at, "xmpp.tls.ca_file", &file);
        }
        if let Some(warning) = cfg.clear_text_warning() {
            self.notes.borrow_mut().push(warning);
        }
        let secret = self.secret(node, &cfg);
        (Some(cfg), secret)
    }

    /// `dashboard:`: a loopback address, URLs of the right scheme; a note
    /// when its files are not built.
    fn dashboard(&self, node: &Node) -> Option<DashboardSettings> {
        let section = read::<DashboardSection>(node, "dashboard", &[], true, self.problems)?;
        match section.resolve(self.base) {
            Ok(settings) => {
                if let Some(note) = settings.missing_files_note() {
                    self.notes.borrow_mut().push(note);
                }
                Some(settings)
            }
            Err(problems) => {
                for (key, message) in problems {
                    let at = locate(node, key).unwrap_or(node);
                    self.problems
                        .push(&at.origin, &join("dashboard", key), message);
                }
                None
            }
        }
    }

    fn connections(&self, node: Option<&Node>) -> Vec<Declared> {
        let mut out = Vec::new();
        let Some(node) = node else {
            return out;
        };
        let Some(entries) = self.mapping(node, "connections") else {
            return out;
        };
        let mut seen = HashSet::new();
        for (key, conn) in entries {
            let path = join("connections", &key.name);
            if !seen.insert(key.name.as_str()) {
                self.problems.push(
                    &key.origin,
                    &path,
                    format!("duplicate connection `{}`", key.name),
                );
                continue;
            }
            // A connection with mistakes is still declared, so that its
            // devices are checked and not reported as pointing nowhere.
            let mut declared = Declared {
                name: key.name.clone(),
                id: None,
                pending: None,
            };
            match ConnectionId::new(&key.name) {
                Ok(id) => declared.id = Some(id),
                Err(e) => {
                    self.problems
                        .push(&key.origin, &path, format!("invalid connection id: {e}"));
                }
            }
            match &conn.kind {
                Kind::Map(kinds) if kinds.len() == 1 => {
                    let (kind, settings) = &kinds[0];
                    let kpath = join(&path, &kind.name);
                    let name = kind.name.as_str();
                    match kinds::KINDS.iter().find(|k| k.name() == name) {
                        Some(k) => declared.pending = Some(k.declare(settings, &kpath, self)),
                        None => self.problems.push(
                            &kind.origin,
                            &kpath,
                            unknown_key_message("connection kind", name, &kinds::names()),
                        ),
                    }
                }
                Kind::Map(kinds) if kinds.len() > 1 => {
                    let names: Vec<String> =
                        kinds.iter().map(|(k, _)| format!("`{}`", k.name)).collect();
                    self.problems.push(
                        &kinds[1].0.origin,
                        &path,
                        format!(
                            "a connection has exactly one kind, found {}; split them into separate connections",
                            names.join(" and ")
                        ),
                    );
                }
                other => {
                    self.problems.push(
                        &conn.origin,
                        &path,
                        format!(
                            "a connection is a mapping with exactly one kind, e.g. `{{ simulator: {{}} }}` (kinds: {}), found {}",
                            kinds::names().join(", "),
                            other.describe()
                        ),
                    );
                }
            }
            out.push(declared);
        }
        out
    }

    pub(super) fn mapping<'n>(&self, node: &'n Node, path: &str) -> Option<&'n [(Key, Node)]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            Kind::Null => Some(&[]),
            other => {
                self.problems.push(
                    &node.origin,
                    path,
                    format!("expected a mapping of ids, found {}", other.describe()),
                );
                None
            }
        }
    }

    /// Loads every device into its connection; returns the specs of those
    /// that loaded and how many devices were declared.
    fn devices(
        &self,
        node: Option<&Node>,
        connections: &mut [Declared],
    ) -> (Vec<DeviceSpec>, usize) {
        let mut specs = Vec::new();
        let Some(node) = node else {
            return (specs, 0);
        };
        let Some(entries) = self.mapping(node, "devices") else {
            return (specs, 0);
        };
        let mut seen = HashSet::new();
        for (key, dev) in entries {
            let path = join("devices", &key.name);
            if !seen.insert(key.name.as_str()) {
                self.problems.push(
                    &key.origin,
                    &path,
                    format!("duplicate device `{}`", key.name),
                );
                continue;
            }
            let id = DeviceId::new(&key.name).map_err(|e| {
                self.problems
                    .push(&key.origin, &path, format!("invalid device id: {e}"));
            });
            let dev = null_as_empty_map(dev);
            // `connection: 5` names the connection "5", as serde would read it.
            let connection = dev.get("connection").and_then(|c| match &c.kind {
                Kind::Str(s) => Some((s.clone(), c)),
                Kind::Int(i) => Some((i.to_string(), c)),
                Kind::Float(f) => Some((f.to_string(), c)),
                Kind::Bool(b) => Some((b.to_string(), c)),
                _ => None,
            });
            let target = connection.as_ref().and_then(|(name, at)| {
                let found = connections.iter().position(|c| c.name == *name);
                if found.is_none() {
                    let known: Vec<&str> = connections.iter().map(|c| c.name.as_str()).collect();
                    let message = if known.is_empty() {
                        format!(
                            "no connection `{name}`: `connections:` declares none; add e.g. `connections: {{ {name}: {{ simulator: {{}} }} }}`"
                        )
                    } else {
                        unknown_key_message("connection", name, &known)
                    };
                    self.problems
                        .push(&at.origin, &join(&path, "connection"), message);
                }
                found
            });
            let pending = target.and_then(|i| connections[i].pending.as_mut());
            match pending {
                Some(pending) => {
                    if let Some(spec) = pending.add_device(self, &dev, &path, id.ok()) {
                        specs.push(spec);
                    }
                }
                None => {
                    // The connection is missing, unknown or of a kind this
                    // version cannot run: check what core understands, and
                    // leave the adapter's keys alone.
                    let _ = read::<DeviceSettings>(&dev, &path, &["points"], false, self.problems);
                }
            }
        }
        (specs, entries.len())
    }
}
