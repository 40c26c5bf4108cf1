//! `fieldbridge modbus scan`: read a range of an unknown device and show
//! each register decoded several ways, so that a user can find the right
//! `type` and `order` for a point.

use std::fmt::Write as _;

use crate::codec::Codec;
use crate::config::{DataType, MAX_BITS, MAX_REGISTERS, Order, Table};
use crate::plan::Read;
use crate::transport::{CallError, Link};
use tokio_modbus::prelude::Response;

/// What a scan read.
#[derive(Debug, Clone, PartialEq)]
pub enum Scanned {
    /// Registers (holding or input).
    Words(Vec<u16>),
    /// Bits (coils or discrete inputs).
    Bits(Vec<bool>),
}

/// Reads `count` registers or bits from `address` on, in as many requests
/// as the protocol limits need.
pub async fn read_range(
    link: &mut Link,
    unit: u8,
    table: Table,
    address: u16,
    count: u16,
) -> Result<Scanned, CallError> {
    let limit = if table.is_bits() {
        MAX_BITS
    } else {
        MAX_REGISTERS
    };
    let mut words = Vec::new();
    let mut bits = Vec::new();
    let end = u32::from(address) + u32::from(count);
    let mut at = u32::from(address);
    while at < end {
        let n = (end - at).min(u32::from(limit)) as u16;
        let read = Read {
            table,
            address: at as u16,
            count: n,
            points: Vec::new(),
        };
        match link.call(unit, crate::adapter::request(&read)).await? {
            Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => {
                words.extend(w.into_iter().take(usize::from(n)));
            }
            Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => {
                bits.extend(b.into_iter().take(usize::from(n)));
            }
            other => {
                return Err(CallError::Protocol(format!("unexpected answer {other:?}")));
            }
        }
        at += u32::from(n);
    }
    Ok(if table.is_bits() {
        Scanned::Bits(bits)
    } else {
        Scanned::Words(words)
    })
}

/// The scan as a table: one line per register (or bit), with the 32- and
/// 64-bit values that start at it in each word order.
pub fn render(table: Table, address: u16, scanned: &Scanned) -> String {
    let mut out = String::new();
    match scanned {
        Scanned::Bits(bits) => {
            let _ = writeln!(out, "{:>6}  value", table.name());
            for (i, b) in bits.iter().enumerate() {
                let _ = writeln!(out, "{:>6}  {}", usize::from(address) + i, u8::from(*b));
            }
        }
        Scanned::Words(words) => {
            let _ = writeln!(
                out,
                "{:>6}  {:<6}  {:>5}  {:>6}  {:<4}  {:<16}  {:>11} {:>11}  {:>14} {:>14} {:>14} {:>14}  {:>14}",
                table.name(),
                "hex",
                "u16",
                "i16",
                "text",
                "bits 15..0",
                "u32 ABCD",
                "u32 CDAB",
                "f32 ABCD",
                "f32 CDAB",
                "f32 BADC",
                "f32 DCBA",
                "f64 ABCD"
            );
            for (i, w) in words.iter().enumerate() {
                let pair = words.get(i..i + 2);
                let quad = words.get(i..i + 4);
                let show = |t: DataType, o: Order, ws: Option<&[u16]>| -> String {
                    ws.and_then(|ws| Codec::plain(t, o, 0).decode(ws).ok())
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into())
                };
                let [hi, lo] = w.to_be_bytes();
                let text: String = [hi, lo]
                    .iter()
                    .map(|b| {
                        if b.is_ascii_graphic() || *b == b' ' {
                            char::from(*b)
                        } else {
                            '.'
                        }
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "{:>6}  0x{w:04X}  {w:>5}  {:>6}  {text:<4}  {:08b} {:08b}  {:>11} {:>11}  {:>14} {:>14} {:>14} {:>14}  {:>14}",
                    usize::from(address) + i,
                    *w as i16,
                    hi,
                    lo,
                    show(DataType::U32, Order::ABCD, pair),
                    show(DataType::U32, Order::CDAB, pair),
                    show(DataType::F32, Order::ABCD, pair),
                    show(DataType::F32, Order::CDAB, pair),
                    show(DataType::F32, Order::BADC, pair),
                    show(DataType::F32, Order::DCBA, pair),
                    show(DataType::F64, Order::ABCD, quad),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_register_is_shown_as_every_common_type() {
        // 123.456f32 = 0x42F6E979; "AB" = 0x4142; -2 = 0xFFFE.
        let out = render(
            Table::Holding,
            100,
            &Scanned::Words(vec![0x42F6, 0xE979, 0x4142, 0xFFFE]),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert!(lines[0].contains("f32 CDAB"));
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&first[..4], ["100", "0x42F6", "17142", "17142"]);
        assert!(lines[1].contains("123.456"), "{}", lines[1]);
        assert!(lines[1].contains("1123477881"), "u32 ABCD of 0x42F6E979");
        let third: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(&third[..5], ["102", "0x4142", "16706", "16706", "AB"]);
        let last: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(&last[..4], ["103", "0xFFFE", "65534", "-2"]);
        // No pair starts at the last register.
        assert!(last.contains(&"-"));
    }

    #[test]
    fn bits_are_listed_one_per_line() {
        let out = render(Table::Coil, 7, &Scanned::Bits(vec![true, false]));
        assert_eq!(out, "  coil  value\n     7  1\n     8  0\n");
    }
}
