//! Validated identifiers.
//!
//! Device ids become JID localparts (`boiler@gw.example.org`) and pubsub node
//! names; point ids appear in chat commands and XEP-0323 field names. Both are
//! restricted to a conservative alphabet so that they survive every XMPP
//! server's nodeprep, every client's input box and every shell, unchanged.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id accepted: JID localparts may be 1023 bytes, but ids are typed
/// by people in chat windows.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("must not be empty")]
    Empty,
    /// The string is longer than [`MAX_ID_LEN`].
    #[error("is {0} characters long, at most {MAX_ID_LEN} are allowed")]
    TooLong(usize),
    /// The string contains a character outside the allowed set.
    #[error(
        "contains {0:?}; use lowercase letters a-z, digits 0-9, '-', '_' and '.' \
         (ids become XMPP addresses and pubsub node names)"
    )]
    BadChar(char),
    /// The string starts or ends with a separator.
    #[error("must start and end with a letter or digit")]
    BadEdge,
}

/// What the id types accept, as a JSON Schema pattern (the length is
/// checked apart): lowercase letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
pub const PATTERN: &str = "^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$";

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let len = s.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong(len));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar(c));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(s.chars().next()) || !edge_ok(s.chars().last()) {
        return Err(IdError::BadEdge);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Cheap to clone (a reference count): ids travel with every
        /// reading, into the bus, the normalizer's state and each item.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: &str) -> Result<Self, IdError> {
                validate(s)?;
                Ok(Self(s.into()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": PATTERN,
                    "minLength": 1,
                    "maxLength": MAX_ID_LEN,
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(|e| {
                    serde::de::Error::custom(format!("invalid id {s:?}: {e}"))
                })
            }
        }
    };
}

id_type!(
    /// A device id: the localpart of the device's JID and its pubsub node name.
    DeviceId
);
id_type!(
    /// A point id, unique within its device.
    PointId
);
id_type!(
    /// A connection id, the key under `connections:` in `gateway.yaml`.
    ConnectionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for ok in ["boiler", "kitchen-plug", "a", "pump_2", "hall.1", "0x"] {
            assert!(DeviceId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_jids_or_people_would_mangle() {
        let cases = [
            ("", IdError::Empty),
            ("Boiler", IdError::BadChar('B')),
            ("boiler room", IdError::BadChar(' ')),
            ("a@b", IdError::BadChar('@')),
            ("a/b", IdError::BadChar('/')),
            ("ké", IdError::BadChar('é')),
            ("-x", IdError::BadEdge),
            ("x.", IdError::BadEdge),
        ];
        for (input, want) in cases {
            assert_eq!(PointId::new(input), Err(want), "{input:?}");
        }
        assert_eq!(DeviceId::new(&"a".repeat(65)), Err(IdError::TooLong(65)));
    }
}
