//! Arbitrary point maps through the read planner: the first bytes are the
//! device's limits and order, then five bytes per point (table and type,
//! address, count or bit, order). Points are kept only if the loader
//! would accept them. Every plan (merged, and one read per point) must
//! serve each point exactly once from a read of its table that covers
//! all its registers, within the protocol and the device's limits, so
//! that decoding an answer of the planned size never comes up short.
#![no_main]

use fieldbridge_modbus::codec::Codec;
use fieldbridge_modbus::config::{DataType, ModbusDevice, ModbusPoint, Order, RawModbusPoint};
use fieldbridge_modbus::plan::{Limits, Read, Span, one_per_point, plan};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<DataType>; 11] = [
    None,
    Some(DataType::Bool),
    Some(DataType::U16),
    Some(DataType::I16),
    Some(DataType::U32),
    Some(DataType::I32),
    Some(DataType::U64),
    Some(DataType::I64),
    Some(DataType::F32),
    Some(DataType::F64),
    Some(DataType::String),
];
const ORDERS: [Order; 4] = [Order::ABCD, Order::CDAB, Order::BADC, Order::DCBA];

fn point(b: &[u8]) -> RawModbusPoint {
    let address = u16::from_be_bytes([b[1], b[2]]);
    let data_type = TYPES[usize::from(b[0] >> 3) % TYPES.len()];
    let mut p = RawModbusPoint {
        data_type,
        ..Default::default()
    };
    match b[0] & 7 {
        0 => p.coil = Some(address),
        1 => p.discrete = Some(address),
        2 => p.input = Some(address),
        3 => p.holding = Some(address),
        // Modicon numbering, 6 digits: 400001 is holding register 0.
        4 => p.register = Some(400_001 + u32::from(address)),
        5 => p.register = Some(300_001 + u32::from(address)),
        6 => p.register = Some(1 + u32::from(address) % 9_999),
        _ => p.register = Some(u32::from(address) * 7),
    }
    match data_type {
        Some(DataType::String) => p.count = Some(u16::from(b[3])),
        Some(DataType::Bool) => p.bit = Some(b[3] & 15),
        _ => {}
    }
    if b[4] & 4 != 0 {
        p.order = Some(ORDERS[usize::from(b[4] & 3)]);
    }
    p
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, e, f, g, rest @ ..] = data else {
        return;
    };
    let device = ModbusDevice {
        max_registers: 1 + u16::from(*a) % 125,
        max_bits: 1 + u16::from_be_bytes([*b, *c]) % 2000,
        max_gap: u16::from_be_bytes([*d, *e]),
        max_bit_gap: u16::from(*f) * 4,
        order: ORDERS[usize::from(g & 3)],
        ..Default::default()
    };
    device.check().expect("the limits are in range");
    let limits = Limits {
        max_registers: device.max_registers,
        max_bits: device.max_bits,
        max_gap: device.max_gap,
        max_bit_gap: device.max_bit_gap,
    };
    // As the loader: checked points that fit one read; as the adapter:
    // each with its location and codec.
    let points: Vec<(ModbusPoint, Codec)> = rest
        .chunks_exact(5)
        .filter_map(|b| ModbusPoint::try_from(point(b)).ok())
        .filter(|p| {
            let limit = if p.location().table.is_bits() {
                limits.max_bits
            } else {
                limits.max_registers
            };
            p.width() <= limit
        })
        .map(|p| {
            let codec = Codec::of(&p, device.order);
            (p, codec)
        })
        .collect();
    let spans: Vec<Span> = points
        .iter()
        .map(|(p, codec)| {
            let at = p.location();
            assert_eq!(codec.width, p.width());
            Span {
                at,
                width: codec.width,
            }
        })
        .collect();

    let merged = plan(&spans, limits);
    covers(&spans, &merged, limits, &points);
    // Never more reads than points, and fewer when points share registers.
    assert!(merged.len() <= spans.len());

    let singles = one_per_point(&spans);
    covers(&spans, &singles, limits, &points);
    assert_eq!(singles.len(), spans.len());
    assert!(singles.iter().all(|r| r.points.len() == 1));
});

fn covers(spans: &[Span], reads: &[Read], limits: Limits, points: &[(ModbusPoint, Codec)]) {
    let mut served = vec![0u32; spans.len()];
    for (i, r) in reads.iter().enumerate() {
        if i > 0 {
            let p = &reads[i - 1];
            assert!(
                (p.table, p.address) <= (r.table, r.address),
                "reads out of order"
            );
        }
        let limit = if r.table.is_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        };
        assert!(r.count >= 1, "{r:?}");
        assert!(r.count <= limit, "{r:?} reads more than {limit}");
        assert!(u32::from(r.address) + u32::from(r.count) <= 65_536, "{r:?}");
        assert!(!r.points.is_empty(), "{r:?} serves nobody");
        // An answer of exactly the size asked for.
        let words: Vec<u16> = (0..r.count).map(|k| k.wrapping_mul(0x9e37)).collect();
        for &pi in &r.points {
            served[pi] += 1;
            let s = spans[pi];
            assert_eq!(s.at.table, r.table);
            assert!(s.at.address >= r.address, "{s:?} starts before {r:?}");
            let end = u32::from(s.at.address) + u32::from(s.width.max(1));
            assert!(
                end <= u32::from(r.address) + u32::from(r.count),
                "{s:?} past {r:?}"
            );
            // As the adapter slices the answer.
            let offset = r.offset(s.at);
            let codec = &points[pi].1;
            if r.table.is_bits() {
                assert!(offset < words.len());
            } else {
                let width = usize::from(codec.width.max(1));
                let w = words
                    .get(offset..offset + width)
                    .expect("the answer holds the point");
                let _ = codec.decode(w);
            }
        }
    }
    assert!(served.iter().all(|&n| n == 1), "served {served:?}");
}
