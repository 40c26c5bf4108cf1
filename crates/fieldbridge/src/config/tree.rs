//! `gateway.yaml` as a tree that remembers where every node came from.
//!
//! serde-saphyr parses the text (YAML syntax errors with line and column)
//! and, through [`serde_saphyr::Spanned`], tells the position of every node.
//! Environment overrides are grafted onto the tree afterwards, marked with
//! the variable they came from, so every later error can point at its source.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in the file, 1-based.
    File {
        /// Line, from 1.
        line: u64,
        /// Column, from 1.
        column: u64,
    },
    /// An environment variable.
    Env(String),
    /// Nowhere: a default or a synthesized node.
    Nowhere,
}

/// A YAML node with its origin.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where it came from.
    pub origin: Origin,
    /// What it is.
    pub kind: Kind,
}

/// A mapping key with its origin.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where the key is written.
    pub origin: Origin,
}

/// The shape of a node.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order; duplicates are kept for the loader to report.
    Map(Vec<(Key, Node)>),
}

impl Kind {
    /// What the node is, for error messages ("a mapping", "the number 5").
    pub fn describe(&self) -> String {
        match self {
            Kind::Null => "nothing (null)".into(),
            Kind::Bool(b) => format!("the boolean {b}"),
            Kind::Int(i) => format!("the number {i}"),
            Kind::Float(f) => format!("the number {f}"),
            Kind::Str(s) => format!("the string {s:?}"),
            Kind::Seq(items) => match items.len() {
                0 => "an empty list".into(),
                1 => "a list of 1 item".into(),
                n => format!("a list of {n} items"),
            },
            Kind::Map(entries) if entries.is_empty() => "an empty mapping".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

impl Node {
    /// A node with no origin.
    pub fn synthetic(kind: Kind) -> Self {
        Self {
            origin: Origin::Nowhere,
            kind,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entries of a mapping (empty for anything else).
    #[cfg(test)]
    pub fn entries(&self) -> &[(Key, Node)] {
        match &self.kind {
            Kind::Map(entries) => entries,
            _ => &[],
        }
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Kind, E> {
        Ok(Kind::Int(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Kind, E> {
        i64::try_from(u)
            .map(Kind::Int)
            .or(Ok(Kind::Float(u as f64)))
    }
    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Kind, E> {
        i64::try_from(i)
            .map(Kind::Int)
            .or(Ok(Kind::Float(i as f64)))
    }
    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Kind, E> {
        i64::try_from(u)
            .map(Kind::Int)
            .or(Ok(Kind::Float(u as f64)))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Kind, E> {
        Ok(Kind::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Kind, E> {
        Ok(Kind::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Kind, E> {
        Ok(Kind::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            let key_origin = origin(&key);
            entries.push((
                Key {
                    name: key.value.0,
                    origin: key_origin,
                },
                value,
            ));
        }
        Ok(Kind::Map(entries))
    }
}

/// A mapping key: any scalar, as text (`1: x` has the key "1").
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Asked for text, the parser gives the key as written: `on:` is the
        // key "on", not the boolean YAML 1.1 would make of it.
        String::deserialize(d).map(KeyText)
    }
}

fn origin<T>(s: &Spanned<T>) -> Origin {
    let at = s.referenced;
    if at.line() == 0 {
        Origin::Nowhere
    } else {
        Origin::File {
            line: at.line(),
            column: at.column(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<KindWrapper>::deserialize(d)?;
        Ok(Node {
            origin: origin(&spanned),
            kind: spanned.value.0,
        })
    }
}

struct KindWrapper(Kind);

impl<'de> Deserialize<'de> for KindWrapper {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor).map(KindWrapper)
    }
}

/// Parses YAML text into a tree. Duplicate keys are kept (the loader
/// reports each one with its position).
pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    if text.trim().is_empty() {
        return Ok(Node {
            origin: Origin::File { line: 1, column: 1 },
            kind: Kind::Null,
        });
    }
    serde_saphyr::from_str_with_options::<Node>(text, options)
}

/// An environment variable's value as a node. Scalars stay text exactly as
/// given (a secret `on` or `0123` is not turned into a boolean or a number);
/// [`Node::typed`] reads them like YAML where a number, boolean or null is
/// wanted, so that `FIELDBRIDGE__DEVICES__X__POLL=10s` and `...__WRITABLE=true`
/// mean what they would mean in the file. `[a, b]` and `{k: v}` are parsed
/// as YAML flow collections.
pub fn parse_env_value(var: &str, text: &str) -> Node {
    let trimmed = text.trim_start();
    let collection = (trimmed.starts_with('[') || trimmed.starts_with('{'))
        .then(|| serde_saphyr::from_str::<Node>(text).ok())
        .flatten();
    let mut node = collection.unwrap_or_else(|| Node::synthetic(Kind::Str(text.to_owned())));
    relabel(&mut node, &Origin::Env(var.to_owned()));
    node
}

impl Node {
    /// The node's kind, with text from an environment variable read as a
    /// YAML scalar (`true`, `5`, `0.5`, `~`); text stays text otherwise.
    pub fn typed(&self) -> std::borrow::Cow<'_, Kind> {
        use std::borrow::Cow;
        match (&self.origin, &self.kind) {
            (Origin::Env(_), Kind::Str(text)) => {
                if text.trim().is_empty() {
                    return Cow::Owned(Kind::Null);
                }
                match serde_saphyr::from_str::<Node>(text) {
                    Ok(Node {
                        kind: k @ (Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_)),
                        ..
                    }) => Cow::Owned(k),
                    _ => Cow::Borrowed(&self.kind),
                }
            }
            _ => Cow::Borrowed(&self.kind),
        }
    }
}

fn relabel(node: &mut Node, origin: &Origin) {
    node.origin = origin.clone();
    match &mut node.kind {
        Kind::Seq(items) => items.iter_mut().for_each(|n| relabel(n, origin)),
        Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            k.origin = origin.clone();
            relabel(v, origin);
        }),
        _ => {}
    }
}

/// `points: { pump: }` and `simulator:` with nothing after the colon mean
/// "no settings", not "null".
pub fn null_as_empty_map(node: &Node) -> Node {
    match node.kind {
        Kind::Null => Node {
            origin: node.origin.clone(),
            kind: Kind::Map(Vec::new()),
        },
        _ => node.clone(),
    }
}

/// `path.key`, or `key` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The node at a relative path like `access.read[1]`.
pub fn locate<'n>(node: &'n Node, path: &str) -> Option<&'n Node> {
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
mod tests {
    use super::*;

    #[test]
    fn remembers_positions_and_keeps_duplicates() {
        let tree = parse("a:\n  b: 5s\n  b: 2\nlist: [1, x]\n").unwrap();
        let a = tree.get("a").unwrap();
        assert_eq!(a.entries().len(), 2, "duplicates are forwarded");
        let (k, v) = &a.entries()[0];
        assert_eq!(k.origin, Origin::File { line: 2, column: 3 });
        assert_eq!(v.origin, Origin::File { line: 2, column: 6 });
        assert!(matches!(&v.kind, Kind::Str(s) if s == "5s"));
        assert!(matches!(a.entries()[1].1.kind, Kind::Int(2)));
        let Kind::Seq(items) = &tree.get("list").unwrap().kind else {
            panic!("a list")
        };
        assert_eq!(
            items[1].origin,
            Origin::File {
                line: 4,
                column: 11
            }
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.location().is_some(), "{err}");
    }

    #[test]
    fn env_values_are_text_read_like_yaml_where_wanted() {
        let v = parse_env_value("V", "true");
        assert!(
            matches!(&v.kind, Kind::Str(s) if s == "true"),
            "raw text kept"
        );
        assert!(matches!(*v.typed(), Kind::Bool(true)));
        assert!(matches!(
            *parse_env_value("V", "0.5").typed(),
            Kind::Float(_)
        ));
        assert!(matches!(*parse_env_value("V", "10s").typed(), Kind::Str(_)));
        assert!(matches!(*parse_env_value("V", "").typed(), Kind::Null));
        assert_eq!(parse_env_value("V", "x").origin, Origin::Env("V".into()));
        let list = parse_env_value("V", "[a, b]");
        assert!(matches!(&list.kind, Kind::Seq(items) if items.len() == 2));
        let Kind::Seq(items) = &list.kind else {
            unreachable!()
        };
        assert_eq!(items[1].origin, Origin::Env("V".into()));
        // File values are what YAML made of them.
        let file = parse("a: true\n").unwrap();
        assert!(matches!(*file.get("a").unwrap().typed(), Kind::Bool(true)));
    }
}
