//! A serde `Deserializer` over [`Node`]: typed config structs from the tree,
//! with every error tied to a position and a key path.
//!
//! Unknown keys do not stop deserialization: they are recorded (with a
//! "did you mean") and skipped, so that one pass reports all of them.
//! A mapping may be shared by two structs (core's settings and an adapter's
//! beside them): each is told the other's keys, so neither calls them unknown.

use std::cell::RefCell;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::tree::{Kind, Node, Origin};

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where (file position or env var).
    pub origin: Origin,
    /// The key path, e.g. `devices.boiler.points.temperature.signal`.
    pub path: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// Where problems are collected while the whole file is checked.
#[derive(Debug, Default)]
pub struct Problems(RefCell<Vec<Problem>>);

impl Problems {
    /// Records a problem.
    pub fn push(&self, origin: &Origin, path: &str, message: impl Into<String>) {
        self.0.borrow_mut().push(Problem {
            origin: origin.clone(),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Everything recorded.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0.into_inner()
    }
}

/// The error of one deserialization, positioned by the innermost node.
#[derive(Debug)]
pub struct DeError {
    origin: Option<Origin>,
    path: Option<String>,
    message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let message = msg.to_string();
        let message =
            if message.starts_with("data did not match any variant of untagged enum Value") {
                "expected a number, true/false or text".to_owned()
            } else {
                message
            };
        Self {
            origin: None,
            path: None,
            message,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format!(
            "expected {}, found {}",
            expectation(exp),
            unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format!(
            "{} is not allowed here, expected {}",
            unexpected(&unexp),
            expectation(exp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format!(
            "expected {}, found {len} item{}",
            expectation(exp),
            if len == 1 { "" } else { "s" }
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list = expected.join(", ");
        de::Error::custom(match suggestion(variant, expected) {
            Some(s) => {
                format!("unknown value `{variant}`, did you mean `{s}`? (expected one of: {list})")
            }
            None => format!("unknown value `{variant}`, expected one of: {list}"),
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(unknown_key_message("key", field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing key `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        de::Error::custom(format!("duplicate key `{field}`"))
    }
}

/// serde's expectations ("u64", "f64") in words for people.
fn expectation(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    let range = |lo: String, hi: String| format!("a whole number from {lo} to {hi}");
    match text.as_str() {
        "u8" => range(0.to_string(), u8::MAX.to_string()),
        "u16" => range(0.to_string(), u16::MAX.to_string()),
        "u32" => range(0.to_string(), u32::MAX.to_string()),
        "u64" | "usize" => range(0.to_string(), u64::MAX.to_string()),
        "i8" => range(i8::MIN.to_string(), i8::MAX.to_string()),
        "i16" => range(i16::MIN.to_string(), i16::MAX.to_string()),
        "i32" => range(i32::MIN.to_string(), i32::MAX.to_string()),
        "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" | "a borrowed string" | "a character" => "text".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping".to_owned(),
        _ => text,
    }
}

/// What was found, in words for people.
fn unexpected(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match *unexp {
        U::Bool(b) => format!("the boolean {b}"),
        U::Unsigned(u) => format!("the number {u}"),
        U::Signed(i) => format!("the number {i}"),
        U::Float(f) => format!("the number {f}"),
        U::Char(c) => format!("the text {:?}", c.to_string()),
        U::Str(s) => format!("the string {s:?}"),
        U::Unit | U::Option => "nothing (null)".to_owned(),
        U::Seq => "a list".to_owned(),
        U::Map => "a mapping".to_owned(),
        ref other => other.to_string(),
    }
}

impl DeError {
    fn at(mut self, origin: &Origin, path: &str) -> Self {
        if self.origin.is_none() {
            self.origin = Some(origin.clone());
            self.path = Some(path.to_owned());
        }
        self
    }
}

/// Keys close to `unknown` among `known`, for "did you mean".
pub fn suggestion(unknown: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned())
}

/// "unknown key `x`, did you mean `y`?" or the list of known keys.
pub fn unknown_key_message(what: &str, key: &str, known: &[&str]) -> String {
    match suggestion(key, known) {
        Some(s) => format!("unknown {what} `{key}`, did you mean `{s}`?"),
        None => {
            let mut sorted = known.to_vec();
            sorted.sort_unstable();
            format!(
                "unknown {what} `{key}`, expected one of: {}",
                sorted.join(", ")
            )
        }
    }
}

/// Deserializes `node` as `T`. On failure the error is recorded and `None`
/// returned. `shared` lists keys of this mapping that belong to another
/// struct; `report_unknown` is false for the second struct of a shared
/// mapping, so unknown keys are reported once.
pub fn read<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    shared: &[&'static str],
    report_unknown: bool,
    problems: &Problems,
) -> Option<T> {
    let de = NodeDe {
        node,
        path: path.to_owned(),
        problems,
        shared,
        report_unknown,
    };
    match T::deserialize(de) {
        Ok(v) => Some(v),
        Err(e) => {
            let origin = e.origin.unwrap_or_else(|| node.origin.clone());
            let p = e.path.unwrap_or_else(|| path.to_owned());
            problems.push(&origin, &p, e.message);
            None
        }
    }
}

/// The keys a derived struct accepts (serde passes them to `deserialize_struct`).
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let probe = Probe::default();
    let _ = T::deserialize(&probe);
    probe.0.get()
}

#[derive(Default)]
struct Probe(std::cell::Cell<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &Probe {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DeError> {
        Err(de::Error::custom("probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, DeError> {
        self.0.set(fields);
        Err(de::Error::custom("probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    problems: &'a Problems,
    shared: &'a [&'static str],
    report_unknown: bool,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node, path: String) -> NodeDe<'a> {
        NodeDe {
            node,
            path,
            problems: self.problems,
            shared: &[],
            report_unknown: true,
        }
    }

    fn invalid(&self, expected: &str) -> DeError {
        de::Error::custom(format!(
            "expected {expected}, found {}",
            self.node.kind.describe()
        ))
    }

    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(&self.node.origin, &self.path))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

struct MapAcc<'a> {
    de: &'a NodeDe<'a>,
    entries: Vec<(&'a str, &'a Node)>,
    next: usize,
}

impl<'de, 'a> de::MapAccess<'de> for MapAcc<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let de: StrDeserializer<'_, DeError> = key.into_deserializer();
        seed.deserialize(de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self.entries[self.next];
        self.next += 1;
        let path = join(&self.de.path, key);
        // Errors raised after the node's own deserializer returned (e.g. by
        // a `deserialize_with` function) still belong to this node.
        seed.deserialize(self.de.child(node, path.clone()))
            .map_err(|e| e.at(&node.origin, &path))
    }
}

struct SeqAcc<'a> {
    de: &'a NodeDe<'a>,
    items: &'a [Node],
    next: usize,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAcc<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.get(self.next) else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.de.path, self.next);
        self.next += 1;
        seed.deserialize(self.de.child(node, path.clone()))
            .map(Some)
            .map_err(|e| e.at(&node.origin, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &*self.node.typed() {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqAcc {
                de: &self,
                items,
                next: 0,
            }),
            Kind::Map(entries) => visitor.visit_map(MapAcc {
                de: &self,
                entries: entries.iter().map(|(k, v)| (k.name.as_str(), v)).collect(),
                next: 0,
            }),
        };
        self.wrap(r)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Int(i) => visitor.visit_string(i.to_string()),
            Kind::Float(f) => visitor.visit_string(f.to_string()),
            Kind::Bool(b) => visitor.visit_string(b.to_string()),
            _ => Err(self.invalid("text")),
        };
        self.wrap(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &*self.node.typed() {
            Kind::Int(i) => visitor.visit_f64(*i as f64),
            Kind::Float(f) => visitor.visit_f64(*f),
            _ => Err(self.invalid("a number")),
        };
        self.wrap(r)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &*self.node.typed() {
            Kind::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.invalid("true or false")),
        };
        self.wrap(r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // From the environment, only an empty value means "none": a secret
        // may well be the text `null`.
        let none = match (&self.node.origin, &self.node.kind) {
            (Origin::Env(_), Kind::Str(text)) => text.trim().is_empty(),
            (_, kind) => matches!(kind, Kind::Null),
        };
        if none {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Seq(items) => visitor.visit_seq(SeqAcc {
                de: &self,
                items,
                next: 0,
            }),
            _ => Err(self.invalid("a list")),
        };
        self.wrap(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Seq(items) if items.len() == len => visitor.visit_seq(SeqAcc {
                de: &self,
                items,
                next: 0,
            }),
            _ => Err(self.invalid(&format!("a list of {len} items"))),
        };
        self.wrap(r)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Map(_) => self.deserialize_any(visitor),
            _ => {
                let e = self.invalid("a mapping");
                self.wrap(Err(e))
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Kind::Map(all) = &self.node.kind else {
            let e = self.invalid("a mapping");
            return self.wrap(Err(e));
        };
        let mut entries: Vec<(&str, &Node)> = Vec::new();
        for (key, node) in all {
            let name = key.name.as_str();
            if fields.contains(&name) {
                if entries.iter().any(|(k, _)| *k == name) {
                    if self.report_unknown {
                        self.problems.push(
                            &key.origin,
                            &join(&self.path, name),
                            format!("duplicate key `{name}`"),
                        );
                    }
                    continue;
                }
                entries.push((name, node));
            } else if self.report_unknown && !self.shared.contains(&name) {
                let known: Vec<&str> = fields.iter().chain(self.shared).copied().collect();
                self.problems.push(
                    &key.origin,
                    &join(&self.path, name),
                    unknown_key_message("key", name, &known),
                );
            }
        }
        let r = visitor.visit_map(MapAcc {
            de: &self,
            entries,
            next: 0,
        });
        self.wrap(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => {
                let de: StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor.visit_enum(de)
            }
            _ => Err(self.invalid("a name")),
        };
        self.wrap(r)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char bytes byte_buf unit
        unit_struct tuple_struct identifier
    }
}
