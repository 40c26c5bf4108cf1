//! Environment overrides: `FIELDBRIDGE__A__B=value` grafted onto the tree
//! at `a.b`, marked with the variable's name so that errors point at it.
//! The `config` crate collects them (its parsing of names and values);
//! positions come from the tree, which `config` would lose.

use super::de::Problems;
use super::tree::{self, Key, Kind, Node, Origin};

/// Prefix of environment overrides: `FIELDBRIDGE__SECTION__KEY`.
pub const ENV_PREFIX: &str = "FIELDBRIDGE";
/// Separator of key path segments in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Grafts `FIELDBRIDGE__A__B=value` onto the tree at `a.b`.
pub(super) fn apply_env(
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
