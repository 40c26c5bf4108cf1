//! `enum:` maps: names for the values of an integer point.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `enum: { 0: off, 1: on, 2: fault }`: names for the values of an integer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnumMap(pub BTreeMap<i64, String>);

impl<'de> Deserialize<'de> for EnumMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnumMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of whole numbers to names, e.g. { 0: off, 1: on }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnumMap, A::Error> {
                let mut out: BTreeMap<i64, String> = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let n: i64 = key.trim().parse().map_err(|_| {
                        de::Error::custom(format!("enum key `{key}` is not a whole number"))
                    })?;
                    let Name(name) = map.next_value()?;
                    // Writes match names ignoring case, so `on` and `ON`
                    // would be one name for two values.
                    if let Some(other) = out.values().find(|v| v.eq_ignore_ascii_case(&name)) {
                        return Err(de::Error::custom(if other == &name {
                            format!("enum name `{name}` is used twice")
                        } else {
                            format!(
                                "enum names `{other}` and `{name}` differ only in case; writes would not tell them apart"
                            )
                        }));
                    }
                    if out.insert(n, name).is_some() {
                        return Err(de::Error::custom(format!("enum key {n} is used twice")));
                    }
                }
                Ok(EnumMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for EnumMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnumMap".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "propertyNames": { "pattern": r"^\s*[+-]?[0-9]+\s*$" },
            "additionalProperties": { "type": ["string", "integer", "boolean"] },
        })
    }
}

/// An enum name. YAML reads unquoted `on`/`off` (and `yes`/`no`,
/// `true`/`false`) as booleans: they become `on` and `off`.
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Name, E> {
                Ok(Name(if v { "on" } else { "off" }.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_that_writes_could_confuse_are_refused() {
        let names = |json: &str| serde_json::from_str::<EnumMap>(json).map_err(|e| e.to_string());
        assert!(names(r#"{"0": "off", "1": "on"}"#).is_ok());
        let e = names(r#"{"0": "on", "1": "ON"}"#).unwrap_err();
        assert!(e.contains("`on` and `ON` differ only in case"), "{e}");
        let e = names(r#"{"0": "on", "1": "on"}"#).unwrap_err();
        assert!(e.contains("`on` is used twice"), "{e}");
    }
}
