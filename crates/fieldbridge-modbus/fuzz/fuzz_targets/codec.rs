//! Arbitrary registers through every data type and order: the first bytes
//! choose the type, order, string count, bit and enum names, the rest are
//! the registers. Decoding never panics; a decoded value encodes back
//! without panic, to the same registers (numbers) or to registers that
//! decode to the same text (strings); and values made from the input
//! encode, when they fit, to registers that decode back to them.
#![no_main]

use fieldbridge_core::Value;
use fieldbridge_modbus::codec::{Codec, CodecError, set_bit, unscale};
use fieldbridge_modbus::config::{DataType, EnumMap, Order};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const TYPES: [DataType; 10] = [
    DataType::Bool,
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::U64,
    DataType::I64,
    DataType::F32,
    DataType::F64,
    DataType::String,
];
const ORDERS: [Order; 4] = [Order::ABCD, Order::CDAB, Order::BADC, Order::DCBA];

/// Built once: names that differ from each other even ignoring case.
fn names() -> &'static EnumMap {
    static NAMES: OnceLock<EnumMap> = OnceLock::new();
    NAMES.get_or_init(|| {
        EnumMap(
            [
                (0, "off"),
                (1, "on"),
                (2, "fault"),
                (-1, "minus one"),
                (65_535, "max"),
                (i64::MIN, "min"),
            ]
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect(),
        )
    })
}

fn is_integer(t: DataType) -> bool {
    matches!(
        t,
        DataType::U16
            | DataType::I16
            | DataType::U32
            | DataType::I32
            | DataType::U64
            | DataType::I64
    )
}

fuzz_target!(|data: &[u8]| {
    let [t, flags, count, bit, rest @ ..] = data else {
        return;
    };
    let data_type = TYPES[usize::from(*t) % TYPES.len()];
    let order = ORDERS[usize::from(flags & 3)];
    let mut codec = Codec::plain(data_type, order, u16::from(*count));
    codec.bit = (bit & 0x80 == 0).then_some(bit & 0x7f);
    if flags & 4 != 0 && is_integer(data_type) {
        codec.names = Some(names().clone());
    }
    let mut words: Vec<u16> = rest
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
        .collect();
    if flags & 8 == 0 {
        // Mostly the right number of registers; sometimes whatever came.
        words.resize(usize::from(codec.width), 0);
    }
    let width = usize::from(codec.width);

    let decoded = codec.decode(&words);
    if words.len() != width {
        assert_eq!(
            decoded,
            Err(CodecError::Length {
                expected: width,
                got: words.len()
            })
        );
    } else {
        match &decoded {
            Ok(v) => round_trip(&codec, &words, v),
            Err(CodecError::TooLarge(_)) => assert_eq!(data_type, DataType::U64),
            Err(CodecError::NotFinite(_)) => {
                assert!(matches!(data_type, DataType::F32 | DataType::F64))
            }
            Err(CodecError::UnknownEnum(_)) => assert!(codec.names.is_some()),
            Err(e) => panic!("decoding {words:04x?} as {data_type:?}: {e}"),
        }
    }

    // Values made from the input, through every type of this order.
    let mut wide = [0u8; 8];
    let n = rest.len().min(8);
    wide[..n].copy_from_slice(&rest[..n]);
    let values = [
        Value::Int(i64::from_be_bytes(wide)),
        Value::Float(f64::from_be_bytes(wide)),
        Value::Float(f64::from(f32::from_be_bytes([
            wide[0], wide[1], wide[2], wide[3],
        ]))),
        Value::Bool(flags & 16 != 0),
        Value::Text(String::from_utf8_lossy(rest).into_owned()),
    ];
    let scale = f64::from(i8::from_be_bytes([*count])) / 4.0;
    let offset = f64::from(i8::from_be_bytes([*bit]));
    for value in &values {
        for t in TYPES {
            let mut c = Codec::plain(t, order, u16::from(*count));
            if is_integer(t) {
                c.names = codec.names.clone();
            }
            encode_decode(&c, value);
            let raw = unscale(value, Some(scale), Some(offset));
            encode_decode(&c, &raw);
        }
    }
});

/// A value decoded from `words` encodes back.
fn round_trip(codec: &Codec, words: &[u16], v: &Value) {
    match (codec.data_type, v) {
        (DataType::Bool, Value::Bool(on)) => {
            assert!(codec.encode(v).is_err(), "a bit is written with set_bit");
            let bit = codec.bit.unwrap_or(0);
            let flipped = set_bit(words[0], bit, !on);
            assert_eq!(codec.decode(&[flipped]), Ok(Value::Bool(!on)));
            assert_eq!(set_bit(flipped, bit, *on), words[0]);
        }
        (DataType::String, Value::Text(text)) => {
            assert!(!text.contains('\0'), "{text:?} holds a NUL");
            match codec.encode(v) {
                Ok(again) => assert_eq!(
                    codec.decode(&again).as_ref(),
                    Ok(v),
                    "{words:04x?} decoded to {text:?}, which encodes to {again:04x?}"
                ),
                // Only text the lossy conversion made longer may not fit.
                Err(CodecError::Invalid(_)) => assert!(text.contains('\u{fffd}')),
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
        (DataType::F32 | DataType::F64, Value::Float(f)) => {
            assert!(f.is_finite());
            assert_eq!(codec.encode(v).as_deref(), Ok(words), "{f}");
        }
        (t, Value::Int(_)) if is_integer(t) && codec.names.is_none() => {
            assert_eq!(codec.encode(v).as_deref(), Ok(words), "{v}");
        }
        (t, Value::Text(_)) if is_integer(t) && codec.names.is_some() => {
            assert_eq!(codec.encode(v).as_deref(), Ok(words), "{v}");
        }
        (t, v) => panic!("a {t:?} decoded to {v:?}"),
    }
}

/// Encoding never panics; what it encodes has the point's width and
/// decodes back to the value (or, for floats and text, what it became).
fn encode_decode(codec: &Codec, value: &Value) {
    let Ok(words) = codec.encode(value) else {
        return;
    };
    assert_eq!(words.len(), usize::from(codec.width), "{codec:?} {value}");
    let back = codec.decode(&words);
    match (codec.data_type, value, &back) {
        (DataType::F32, Value::Float(f), Ok(Value::Float(g))) => {
            assert_eq!(f64::from(*f as f32).to_bits(), g.to_bits())
        }
        (DataType::F32, Value::Int(i), Ok(Value::Float(g))) => {
            assert_eq!(f64::from(*i as f64 as f32).to_bits(), g.to_bits())
        }
        (DataType::F64, Value::Float(f), Ok(Value::Float(g))) => {
            assert_eq!(f.to_bits(), g.to_bits())
        }
        (DataType::F64, Value::Int(i), Ok(Value::Float(g))) => assert_eq!(*i as f64, *g),
        (DataType::String, Value::Text(t), Ok(Value::Text(back))) => {
            // Text ends at the first NUL and loses trailing spaces.
            let t = t.split('\0').next().unwrap_or_default();
            assert_eq!(t.trim_end_matches(' '), back, "{value}")
        }
        (t, value, _) if is_integer(t) => {
            // Compare the integers, names aside.
            let plain = Codec {
                names: None,
                ..codec.clone()
            };
            let Ok(Value::Int(got)) = plain.decode(&words) else {
                panic!("{codec:?}: {value} encoded to {words:04x?}, decoded to {back:?}");
            };
            let wanted = match value {
                Value::Int(i) => *i,
                Value::Bool(b) => i64::from(*b),
                Value::Float(f) => f.round() as i64,
                Value::Text(t) => {
                    let names = codec
                        .names
                        .as_ref()
                        .expect("text encodes only through names");
                    let name = &names.0[&got];
                    assert!(name.eq_ignore_ascii_case(t.trim()), "{t:?} wrote {name:?}");
                    got
                }
            };
            assert_eq!(wanted, got, "{codec:?}: {value}");
            if let Some(names) = &codec.names {
                match names.0.get(&got) {
                    Some(name) => assert_eq!(back, Ok(Value::Text(name.clone()))),
                    None => assert_eq!(back, Err(CodecError::UnknownEnum(got))),
                }
            }
        }
        (_, _, back) => panic!("{codec:?}: {value} encoded to {words:04x?}, decoded to {back:?}"),
    }
}
