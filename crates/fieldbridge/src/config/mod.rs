//! Loading `gateway.yaml`: every problem at once, each with file:line:column
//! (or the environment variable) and the key path.
//!
//! The file is parsed into a position-carrying [`tree`]; environment
//! overrides (`FIELDBRIDGE__XMPP__SECRET`, collected by the `config` crate)
//! are grafted onto it; then each section, connection, device and point is
//! read on its own, so that a mistake in one does not hide the others.

mod de;
mod error;
mod kinds;
pub mod schema;
mod tree;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::device::{AdapterDevice, MAX_DECIMALS, PointSource};
use fieldbridge_core::files::{self, KIB, MIB};
use fieldbridge_core::kind::BuildContext;
use fieldbridge_core::{
    ConnectionId, DeviceId, DeviceSettings, DeviceSpec, Directory, PointId, PointSettings,
    PointSpec, ValueKind,
};
use fieldbridge_xmpp::XmppConfig;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use self::de::{Problems, fields_of, read, unknown_key_message};
pub use self::error::{ConfigError, ConfigErrors, Location};
pub use self::kinds::{DeviceLines, Loaded, LoadedConnection};
use self::tree::{Key, Kind, Node, Origin};

/// Prefix of environment overrides: `FIELDBRIDGE__SECTION__KEY`.
pub const ENV_PREFIX: &str = "FIELDBRIDGE";
/// Separator of key path segments in environment variable names.
pub const ENV_SEPARATOR: &str = "__";
/// `gateway.yaml` larger than this is refused (thousands of devices fit).
pub const CONFIG_FILE_LIMIT: u64 = 16 * MIB;
/// `xmpp.secret_file` larger than this is refused: a secret is a line.
pub const SECRET_FILE_LIMIT: u64 = 4 * KIB;

/// `gateway:` — this gateway's identity and where it keeps state.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Names this gateway in logs and client ids (default `fieldbridge`).
    #[serde(default = "default_gateway_id")]
    #[schemars(with = "DeviceId")]
    pub id: String,
    /// Where subscriptions and other state survive restarts; relative to
    /// the config file (default: `state` beside it).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

fn default_gateway_id() -> String {
    "fieldbridge".to_owned()
}

/// The gateway's identity, resolved.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The gateway id.
    pub id: String,
    /// The state directory, absolute or relative to the working directory.
    pub state_dir: PathBuf,
}

/// A loaded, checked configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    /// The file it came from.
    pub source: PathBuf,
    /// `gateway:`
    pub gateway: Gateway,
    /// `xmpp:`
    pub xmpp: XmppConfig,
    /// The component secret (empty only in `check`, when the secret file is
    /// not readable by the user checking).
    pub secret: String,
    /// Every device and point.
    pub directory: Arc<Directory>,
    /// Connections with their devices, one adapter each.
    pub connections: Vec<Connection>,
    /// Things worth knowing that do not stop the gateway.
    pub notes: Vec<String>,
}

impl GatewayConfig {
    /// What adapters are built with (and `check` describes them with).
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            gateway_id: self.gateway.id.clone(),
            directory: Arc::clone(&self.directory),
        }
    }
}

/// One connection and what it serves.
#[derive(Debug)]
pub struct Connection {
    /// The key under `connections:`.
    pub id: ConnectionId,
    /// The transport, of one of [`kinds::KINDS`], with its devices.
    pub kind: Box<dyn LoadedConnection>,
}

const TOP_KEYS: &[&str] = &["gateway", "xmpp", "connections", "devices"];

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

/// Grafts `FIELDBRIDGE__A__B=value` onto the tree at `a.b`.
fn apply_env(
    root: &mut Node,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &Problems,
) {
    let lead = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let source: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&lead))
        .collect();
    // The `config` crate hands keys back lowercased and joined by dots; keep
    // each variable's own spelling to name it in errors.
    let names: std::collections::HashMap<String, String> = source
        .keys()
        .map(|var| {
            let key = var[lead.len()..]
                .split(ENV_SEPARATOR)
                .collect::<Vec<_>>()
                .join(".")
                .to_lowercase();
            (key, var.clone())
        })
        .collect();
    let collected = config::Source::collect(
        &config::Environment::with_prefix(ENV_PREFIX)
            .separator(ENV_SEPARATOR)
            .source(Some(source)),
    );
    let overrides = match collected {
        Ok(map) => map,
        Err(e) => {
            problems.push(&Origin::Nowhere, "", format!("environment overrides: {e}"));
            return;
        }
    };
    let mut overrides: Vec<(String, String)> = overrides
        .into_iter()
        .filter_map(|(k, v)| v.into_string().ok().map(|v| (k, v)))
        .collect();
    overrides.sort();
    for (key, value) in overrides {
        let var = names
            .get(&key)
            .cloned()
            .unwrap_or_else(|| format!("{lead}{}", key.replace('.', ENV_SEPARATOR).to_uppercase()));
        let segments: Vec<&str> = key.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            problems.push(
                &Origin::Env(var.clone()),
                &key,
                "empty key segment in the variable name",
            );
            continue;
        }
        if let Err((at, found)) = graft(root, &segments, tree::parse_env_value(&var, &value)) {
            problems.push(
                &Origin::Env(var.clone()),
                &key,
                format!("cannot override: `{at}` holds {found}, not a mapping with keys"),
            );
        }
    }
}

/// Puts `value` at `segments` below `node`, creating mappings on the way.
/// Fails with the path of a node in the way that is not a mapping, and
/// what it is.
fn graft(node: &mut Node, segments: &[&str], value: Node) -> Result<(), (String, String)> {
    let Some((first, rest)) = segments.split_first() else {
        *node = value;
        return Ok(());
    };
    if matches!(node.kind, Kind::Null) {
        node.kind = Kind::Map(Vec::new());
    }
    let Kind::Map(entries) = &mut node.kind else {
        // Not the value itself: it may be the secret.
        let found = match node.kind {
            Kind::Seq(_) => "a list",
            _ => "a single value",
        };
        return Err((String::new(), found.to_owned()));
    };
    let index = match entries.iter().position(|(k, _)| k.name == *first) {
        Some(i) => i,
        None => {
            entries.push((
                Key {
                    name: (*first).to_owned(),
                    origin: value.origin.clone(),
                },
                Node {
                    origin: value.origin.clone(),
                    kind: Kind::Null,
                },
            ));
            entries.len() - 1
        }
    };
    graft(&mut entries[index].1, rest, value).map_err(|(at, found)| {
        if at.is_empty() {
            ((*first).to_owned(), found)
        } else {
            (format!("{first}.{at}"), found)
        }
    })
}

struct Loader<'a> {
    problems: &'a Problems,
    /// The configuration's directory: relative paths start there.
    base: &'a Path,
    purpose: Purpose,
    /// Things worth knowing that do not stop the gateway.
    notes: RefCell<Vec<String>>,
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

        let mut connections = self.connections(root.get("connections"));
        let (specs, device_count) = self.devices(root.get("devices"), &mut connections);

        let gateway = gateway?;
        let xmpp = xmpp?;
        let (secret, mut notes) = secret?;
        notes.append(&mut self.notes.borrow_mut());
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
            gateway: Gateway {
                id: gateway.id,
                state_dir,
            },
            xmpp,
            secret,
            directory: Arc::new(Directory::new(specs)),
            connections: out,
            notes,
        })
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

    fn xmpp(&self, node: &Node) -> (Option<XmppConfig>, Option<(String, Vec<String>)>) {
        let Some(cfg) = read::<XmppConfig>(node, "xmpp", &[], true, self.problems) else {
            return (None, None);
        };
        for p in cfg.problems() {
            let at = locate(node, &p.path).unwrap_or(node);
            self.problems
                .push(&at.origin, &join("xmpp", &p.path), p.message);
        }
        let mut notes = Vec::new();
        // FIELDBRIDGE__XMPP__SECRET overrides `secret_file`; both written in
        // the file is a doubt about which one is meant.
        let from_file = |key: &str| {
            node.get(key).is_some_and(|n| {
                matches!(n.origin, Origin::File { .. }) && !matches!(n.kind, Kind::Null)
            })
        };
        if from_file("secret") && from_file("secret_file") {
            let at = node.get("secret_file").unwrap_or(node);
            self.problems.push(
                &at.origin,
                "xmpp.secret_file",
                "both `secret` and `secret_file` are set; keep only one (preferably `secret_file`)",
            );
            return (Some(cfg), None);
        }
        let secret = match (&cfg.secret, &cfg.secret_file) {
            (Some(s), _) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            (Some(_), _) => {
                let at = node.get("secret").unwrap_or(node);
                self.problems
                    .push(&at.origin, "xmpp.secret", "the secret is empty");
                None
            }
            (None, Some(file)) => {
                let full = if file.is_absolute() {
                    file.clone()
                } else {
                    self.base.join(file)
                };
                let at = node.get("secret_file").unwrap_or(node);
                match files::read_text_limited(&full, SECRET_FILE_LIMIT) {
                    Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                    Ok(_) => {
                        self.problems.push(
                            &at.origin,
                            "xmpp.secret_file",
                            format!(
                                "{} is empty; put the component secret in it",
                                full.display()
                            ),
                        );
                        None
                    }
                    // `check` may run as another user than the gateway:
                    // what the system refuses here may work there. A
                    // file of the wrong kind or size is wrong for anyone.
                    Err(e) => match e.problem() {
                        files::Problem::Io(io) if self.purpose == Purpose::Check => {
                            notes.push(format!(
                                "the secret file {} cannot be read here ({io}); the gateway's own user must be able to read it",
                                full.display()
                            ));
                            Some(String::new())
                        }
                        problem => {
                            let hint = if matches!(problem, files::Problem::TooLarge(_)) {
                                ": is this the secret?"
                            } else {
                                ""
                            };
                            self.problems.push(
                                &at.origin,
                                "xmpp.secret_file",
                                format!("{e}{hint}"),
                            );
                            None
                        }
                    },
                }
            }
            (None, None) => {
                self.problems.push(
                    &node.origin,
                    "xmpp",
                    "no component secret: set `secret_file`, or the environment variable FIELDBRIDGE__XMPP__SECRET",
                );
                None
            }
        };
        (Some(cfg), secret.map(|s| (s, notes)))
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

    fn mapping<'n>(&self, node: &'n Node, path: &str) -> Option<&'n [(Key, Node)]> {
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

    fn device<D: DeserializeOwned, P: DeserializeOwned + PointSource>(
        &self,
        node: &Node,
        path: &str,
        id: Option<DeviceId>,
        default_poll: Option<Duration>,
        check_point: fn(&P) -> Result<(), String>,
    ) -> Option<AdapterDevice<D, P>> {
        let mut shared: Vec<&'static str> = fields_of::<D>().to_vec();
        shared.push("points");
        let settings = read::<DeviceSettings>(node, path, &shared, true, self.problems);
        let mut shared: Vec<&'static str> = fields_of::<DeviceSettings>().to_vec();
        shared.push("points");
        let config = read::<D>(node, path, &shared, false, self.problems);

        let ppath = join(path, "points");
        let mut points = BTreeMap::new();
        let mut specs = BTreeMap::new();
        let point_nodes = match node.get("points") {
            None => {
                self.problems
                    .push(&node.origin, path, "a device needs `points`");
                &[][..]
            }
            Some(p) => self.mapping(p, &ppath).unwrap_or(&[]),
        };
        if node.get("points").is_some() && point_nodes.is_empty() {
            self.problems.push(
                &node.get("points").unwrap_or(node).origin,
                &ppath,
                "a device needs at least one point",
            );
        }
        let core_fields = fields_of::<PointSettings>();
        let adapter_fields = fields_of::<P>();
        let mut seen = HashSet::new();
        let mut all_ok = true;
        for (key, pnode) in point_nodes {
            let path = join(&ppath, &key.name);
            if !seen.insert(key.name.as_str()) {
                self.problems.push(
                    &key.origin,
                    &path,
                    format!("duplicate point `{}`", key.name),
                );
                all_ok = false;
                continue;
            }
            let pid = PointId::new(&key.name).map_err(|e| {
                self.problems
                    .push(&key.origin, &path, format!("invalid point id: {e}"));
            });
            let pnode = null_as_empty_map(pnode);
            let core = read::<PointSettings>(&pnode, &path, adapter_fields, true, self.problems);
            let own = read::<P>(&pnode, &path, core_fields, false, self.problems);
            let (Ok(pid), Some(core), Some(own)) = (pid, core, own) else {
                all_ok = false;
                continue;
            };
            if let Err(e) = check_point(&own) {
                self.problems.push(&pnode.origin, &path, e);
                all_ok = false;
                continue;
            }
            let mut kind = own.kind();
            // Core turns a scaled integer into a float (see `normalize`):
            // the point carries, and writes take, what users see.
            if kind == ValueKind::Int
                && (core.scale.is_some() || core.offset.is_some_and(|o| o.fract() != 0.0))
            {
                kind = ValueKind::Float;
            }
            if !self.check_point_settings(&pnode, &path, &core, kind) {
                all_ok = false;
                continue;
            }
            specs.insert(
                pid.clone(),
                PointSpec {
                    id: pid.clone(),
                    kind,
                    settings: core,
                },
            );
            points.insert(pid, own);
        }
        let (Some(id), Some(mut settings), Some(config), true) = (id, settings, config, all_ok)
        else {
            return None;
        };
        if settings.poll.is_none() {
            settings.poll = default_poll;
        }
        if let Some(poll) = settings.poll
            && poll.is_zero()
        {
            let at = node.get("poll").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "poll"),
                "poll must be longer than 0s",
            );
            return None;
        }
        Some(AdapterDevice {
            spec: Arc::new(DeviceSpec {
                id,
                settings,
                points: specs,
            }),
            config,
            points,
        })
    }

    fn check_point_settings(
        &self,
        node: &Node,
        path: &str,
        s: &PointSettings,
        kind: ValueKind,
    ) -> bool {
        let mut ok = true;
        let numeric = matches!(kind, ValueKind::Int | ValueKind::Float);
        for (name, set) in [
            ("scale", s.scale.is_some()),
            ("offset", s.offset.is_some()),
            ("deadband", s.deadband.is_some()),
            ("decimals", s.decimals.is_some()),
        ] {
            if set && !numeric {
                let at = node.get(name).unwrap_or(node);
                self.problems.push(
                    &at.origin,
                    &join(path, name),
                    format!("`{name}` applies only to numeric points; this point is {kind}"),
                );
                ok = false;
            }
        }
        if let Some(d) = s.deadband
            && !(d >= 0.0 && d.is_finite())
        {
            let at = node.get("deadband").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "deadband"),
                format!("deadband must be 0 or more, found {d}"),
            );
            ok = false;
        }
        if let Some(d) = s.decimals
            && d > MAX_DECIMALS
        {
            let at = node.get("decimals").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "decimals"),
                format!("decimals must be 0 to {MAX_DECIMALS}, found {d}"),
            );
            ok = false;
        }
        if let (Some(min), Some(max)) = (s.min_interval, s.max_interval)
            && min > max
        {
            let at = node.get("min_interval").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "min_interval"),
                "min_interval must not be longer than max_interval",
            );
            ok = false;
        }
        ok
    }
}

/// `points: { pump: }` and `simulator:` with nothing after the colon mean
/// "no settings", not "null".
fn null_as_empty_map(node: &Node) -> Node {
    match node.kind {
        Kind::Null => Node {
            origin: node.origin.clone(),
            kind: Kind::Map(Vec::new()),
        },
        _ => node.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The node at a relative path like `access.read[1]`.
fn locate<'n>(node: &'n Node, path: &str) -> Option<&'n Node> {
    let mut at = node;
    for segment in path.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        if !name.is_empty() {
            at = at.get(name)?;
        }
        if let Some(i) = index {
            match &at.kind {
                Kind::Seq(items) => at = items.get(i)?,
                _ => return None,
            }
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests;
