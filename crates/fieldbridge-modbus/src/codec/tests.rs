//! Every type × order against vectors written by hand (register values as
//! a Modbus master would show them), and against the standard library's
//! own byte conversions, never against our encoder alone.

use super::*;
use crate::config::DataType::*;
use crate::config::Order::*;

fn codec(t: DataType, o: Order) -> Codec {
    Codec::plain(t, o, 0)
}

/// (type, order, registers on the wire, value)
fn vectors() -> Vec<(DataType, Order, Vec<u16>, Value)> {
    vec![
        // u16 0x1234 = 4660
        (U16, ABCD, vec![0x1234], Value::Int(4660)),
        (U16, CDAB, vec![0x1234], Value::Int(4660)),
        (U16, BADC, vec![0x3412], Value::Int(4660)),
        (U16, DCBA, vec![0x3412], Value::Int(4660)),
        (U16, ABCD, vec![0xFFFF], Value::Int(65535)),
        // i16 -2 = 0xFFFE; -300 = 0xFED4
        (I16, ABCD, vec![0xFFFE], Value::Int(-2)),
        (I16, CDAB, vec![0xFED4], Value::Int(-300)),
        (I16, BADC, vec![0xD4FE], Value::Int(-300)),
        (I16, DCBA, vec![0xFEFF], Value::Int(-2)),
        (I16, ABCD, vec![0x7FFF], Value::Int(32767)),
        // u32 0x12345678 = 305419896
        (U32, ABCD, vec![0x1234, 0x5678], Value::Int(305_419_896)),
        (U32, CDAB, vec![0x5678, 0x1234], Value::Int(305_419_896)),
        (U32, BADC, vec![0x3412, 0x7856], Value::Int(305_419_896)),
        (U32, DCBA, vec![0x7856, 0x3412], Value::Int(305_419_896)),
        (U32, ABCD, vec![0xFFFF, 0xFFFF], Value::Int(4_294_967_295)),
        // i32 -123456789 = 0xF8A432EB
        (I32, ABCD, vec![0xF8A4, 0x32EB], Value::Int(-123_456_789)),
        (I32, CDAB, vec![0x32EB, 0xF8A4], Value::Int(-123_456_789)),
        (I32, BADC, vec![0xA4F8, 0xEB32], Value::Int(-123_456_789)),
        (I32, DCBA, vec![0xEB32, 0xA4F8], Value::Int(-123_456_789)),
        // f32 123.456 = 0x42F6E979 (the classic Modbus Poll example)
        (
            F32,
            ABCD,
            vec![0x42F6, 0xE979],
            Value::Float(f64::from(123.456f32)),
        ),
        (
            F32,
            CDAB,
            vec![0xE979, 0x42F6],
            Value::Float(f64::from(123.456f32)),
        ),
        (
            F32,
            BADC,
            vec![0xF642, 0x79E9],
            Value::Float(f64::from(123.456f32)),
        ),
        (
            F32,
            DCBA,
            vec![0x79E9, 0xF642],
            Value::Float(f64::from(123.456f32)),
        ),
        // f32 -1.5 = 0xBFC00000
        (F32, ABCD, vec![0xBFC0, 0x0000], Value::Float(-1.5)),
        (F32, DCBA, vec![0x0000, 0xC0BF], Value::Float(-1.5)),
        // u64 0x0123456789ABCDEF = 81985529216486895
        (
            U64,
            ABCD,
            vec![0x0123, 0x4567, 0x89AB, 0xCDEF],
            Value::Int(81_985_529_216_486_895),
        ),
        (
            U64,
            CDAB,
            vec![0xCDEF, 0x89AB, 0x4567, 0x0123],
            Value::Int(81_985_529_216_486_895),
        ),
        (
            U64,
            BADC,
            vec![0x2301, 0x6745, 0xAB89, 0xEFCD],
            Value::Int(81_985_529_216_486_895),
        ),
        (
            U64,
            DCBA,
            vec![0xEFCD, 0xAB89, 0x6745, 0x2301],
            Value::Int(81_985_529_216_486_895),
        ),
        // i64 -2 = 0xFFFFFFFFFFFFFFFE
        (
            I64,
            ABCD,
            vec![0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE],
            Value::Int(-2),
        ),
        (
            I64,
            CDAB,
            vec![0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
            Value::Int(-2),
        ),
        (
            I64,
            BADC,
            vec![0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
            Value::Int(-2),
        ),
        (
            I64,
            DCBA,
            vec![0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
            Value::Int(-2),
        ),
        // i64 0x0000000000010000 = 65536
        (
            I64,
            ABCD,
            vec![0x0000, 0x0000, 0x0001, 0x0000],
            Value::Int(65536),
        ),
        // f64 pi = 0x400921FB54442D18
        (
            F64,
            ABCD,
            vec![0x4009, 0x21FB, 0x5444, 0x2D18],
            Value::Float(std::f64::consts::PI),
        ),
        (
            F64,
            CDAB,
            vec![0x2D18, 0x5444, 0x21FB, 0x4009],
            Value::Float(std::f64::consts::PI),
        ),
        (
            F64,
            BADC,
            vec![0x0940, 0xFB21, 0x4454, 0x182D],
            Value::Float(std::f64::consts::PI),
        ),
        (
            F64,
            DCBA,
            vec![0x182D, 0x4454, 0xFB21, 0x0940],
            Value::Float(std::f64::consts::PI),
        ),
        // f64 -2.5 = 0xC004000000000000
        (F64, ABCD, vec![0xC004, 0, 0, 0], Value::Float(-2.5)),
        (F64, DCBA, vec![0, 0, 0, 0x04C0], Value::Float(-2.5)),
    ]
}

#[test]
fn every_type_and_order_decodes_hand_written_registers() {
    for (t, o, words, want) in vectors() {
        assert_eq!(
            codec(t, o).decode(&words),
            Ok(want.clone()),
            "{} {} {words:04X?}",
            t.name(),
            o.name()
        );
    }
}

#[test]
fn every_type_and_order_encodes_to_the_same_hand_written_registers() {
    for (t, o, words, value) in vectors() {
        assert_eq!(
            codec(t, o).encode(&value),
            Ok(words.clone()),
            "{} {} {value}",
            t.name(),
            o.name()
        );
    }
}

/// The four orders against std's own conversions: ABCD is big-endian,
/// DCBA little-endian, and the two swaps are big-endian bytes permuted.
#[test]
fn orders_agree_with_std_byte_conversions() {
    for x in [0.0f32, 1.0, -0.1, 21.5, 1e-30, 3.4e38, -7777.25] {
        let be = x.to_be_bytes();
        let le = x.to_le_bytes();
        let w = |a: u8, b: u8| u16::from_be_bytes([a, b]);
        let cases = [
            (ABCD, vec![w(be[0], be[1]), w(be[2], be[3])]),
            (DCBA, vec![w(le[0], le[1]), w(le[2], le[3])]),
            (CDAB, vec![w(be[2], be[3]), w(be[0], be[1])]),
            (BADC, vec![w(be[1], be[0]), w(be[3], be[2])]),
        ];
        for (o, words) in cases {
            assert_eq!(
                codec(F32, o).decode(&words),
                Ok(Value::Float(f64::from(x))),
                "{x} {}",
                o.name()
            );
        }
    }
    for x in [0i64, 1, -1, i64::MIN, i64::MAX, 0x1122_3344_5566_7788] {
        let le = x.to_le_bytes();
        let words: Vec<u16> = le
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(codec(I64, DCBA).decode(&words), Ok(Value::Int(x)), "{x}");
        let be = x.to_be_bytes();
        let words: Vec<u16> = be
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(codec(I64, ABCD).decode(&words), Ok(Value::Int(x)), "{x}");
    }
}

#[test]
fn bits_in_registers() {
    let mut c = codec(Bool, ABCD);
    for (bit, word, want) in [
        (0, 0x0001, true),
        (0, 0xFFFE, false),
        (15, 0x8000, true),
        (15, 0x7FFF, false),
        (3, 0b1000, true),
        (4, 0b1000, false),
    ] {
        c.bit = Some(bit);
        assert_eq!(
            c.decode(&[word]),
            Ok(Value::Bool(want)),
            "bit {bit} of {word:#06x}"
        );
    }
    assert_eq!(set_bit(0x0000, 15, true), 0x8000);
    assert_eq!(set_bit(0xFFFF, 0, false), 0xFFFE);
    assert_eq!(set_bit(0x00F0, 4, false), 0x00E0);
}

#[test]
fn strings_keep_register_order_and_swap_bytes_for_badc() {
    // "HELLO" = 48 45 4C 4C 4F, padded with NUL to 3 registers.
    let words = [0x4845, 0x4C4C, 0x4F00];
    let c = Codec::plain(String, ABCD, 3);
    assert_eq!(c.decode(&words), Ok(Value::Text("HELLO".into())));
    assert_eq!(c.encode(&Value::Text("HELLO".into())), Ok(words.to_vec()));
    // Word order does not reorder a string's registers.
    assert_eq!(
        Codec::plain(String, CDAB, 3).decode(&words),
        Ok(Value::Text("HELLO".into()))
    );
    let swapped = [0x4548, 0x4C4C, 0x004F];
    assert_eq!(
        Codec::plain(String, BADC, 3).decode(&swapped),
        Ok(Value::Text("HELLO".into()))
    );
    // Trailing spaces go, and text ends at the first NUL.
    assert_eq!(
        c.decode(&[0x4142, 0x2020, 0x2020]),
        Ok(Value::Text("AB".into()))
    );
    assert_eq!(c.decode(&[0x4100, 0x4242, 0]), Ok(Value::Text("A".into())));
    assert!(c.encode(&Value::Text("TOO LONG!".into())).is_err());
}

/// Found by the `codec` fuzz target: spaces before a NUL that ends the
/// text early were kept (`AB \0CD` read as `AB `), so text that was read
/// did not encode back to registers that read the same.
#[test]
fn spaces_before_the_first_nul_go_too() {
    let c = Codec::plain(String, ABCD, 3);
    assert_eq!(
        c.decode(&[0x4142, 0x2000, 0x4344]),
        Ok(Value::Text("AB".into()))
    );
    // The fuzzer's case: a space, a NUL, then bytes that are not UTF-8.
    assert_eq!(
        c.decode(&[0x2000, 0xFFFF, 0xFF00]),
        Ok(Value::Text("".into()))
    );
    let words = c
        .encode(&Value::Text(" \0\u{fffd}".into()))
        .expect("6 bytes fit 3 registers");
    assert_eq!(c.decode(&words), Ok(Value::Text("".into())));
}

#[test]
fn enums_name_integers_both_ways() {
    let mut c = codec(U16, ABCD);
    c.names = Some(EnumMap(
        [
            (0, "off".to_owned()),
            (1, "on".to_owned()),
            (2, "fault".to_owned()),
        ]
        .into(),
    ));
    assert_eq!(c.decode(&[2]), Ok(Value::Text("fault".into())));
    assert_eq!(c.decode(&[7]), Err(CodecError::UnknownEnum(7)));
    assert_eq!(c.encode(&Value::Text("On".into())), Ok(vec![1]));
    let err = c.encode(&Value::Text("warm".into())).unwrap_err();
    assert_eq!(err.to_string(), "\"warm\" is not one of: off, on, fault");
}

#[test]
fn bad_registers_and_values_are_errors_not_panics() {
    assert_eq!(
        codec(F32, ABCD).decode(&[0x4000]),
        Err(CodecError::Length {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        codec(F64, ABCD).decode(&[]),
        Err(CodecError::Length {
            expected: 4,
            got: 0
        })
    );
    assert!(matches!(
        codec(F32, ABCD).decode(&[0x7FC0, 0x0000]),
        Err(CodecError::NotFinite(_))
    ));
    assert_eq!(
        codec(U64, ABCD).decode(&[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        Err(CodecError::TooLarge(u64::MAX))
    );
    assert!(codec(U16, ABCD).encode(&Value::Int(65536)).is_err());
    assert!(codec(U16, ABCD).encode(&Value::Int(-1)).is_err());
    assert!(codec(I16, ABCD).encode(&Value::Int(32768)).is_err());
    assert!(codec(I32, ABCD).encode(&Value::Int(1 << 31)).is_err());
    assert!(codec(F32, ABCD).encode(&Value::Float(1e39)).is_err());
    assert!(codec(U16, ABCD).encode(&Value::Text("x".into())).is_err());
}

#[test]
fn scaled_writes_are_unscaled_and_rounded() {
    // temperature = raw * 0.1 - 40: writing 21.5 sends raw 615.
    let raw = unscale(&Value::Float(21.5), Some(0.1), Some(-40.0));
    assert_eq!(codec(U16, ABCD).encode(&raw), Ok(vec![615]));
    assert_eq!(unscale(&Value::Int(5), None, None), Value::Int(5));
    assert_eq!(
        unscale(&Value::Bool(true), Some(2.0), None),
        Value::Bool(true)
    );
}
