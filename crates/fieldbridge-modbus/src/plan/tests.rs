//! The request plan for tricky maps, asserted request by request.

use super::*;
use crate::config::Table::*;

fn span(table: Table, address: u16, width: u16) -> Span {
    Span {
        at: Location { table, address },
        width,
    }
}

/// (table, address, count, points) of each read.
fn shape(reads: &[Read]) -> Vec<(Table, u16, u16, Vec<usize>)> {
    reads
        .iter()
        .map(|r| (r.table, r.address, r.count, r.points.clone()))
        .collect()
}

#[test]
fn neighbours_merge_and_tables_never_mix() {
    let spans = [
        span(Holding, 10, 1),
        span(Holding, 11, 2),
        span(Input, 11, 1),
        span(Coil, 0, 1),
        span(Coil, 7, 1),
        span(Discrete, 3, 1),
    ];
    assert_eq!(
        shape(&plan(&spans, Limits::default())),
        vec![
            (Coil, 0, 8, vec![3, 4]),
            (Discrete, 3, 1, vec![5]),
            (Input, 11, 1, vec![2]),
            (Holding, 10, 3, vec![0, 1]),
        ]
    );
}

#[test]
fn overlapping_points_share_one_read() {
    // A u32 at 100, its low half as u16 at 101, a bit of 100, and an f64
    // starting inside the u32.
    let spans = [
        span(Holding, 100, 2),
        span(Holding, 101, 1),
        span(Holding, 100, 1),
        span(Holding, 101, 4),
    ];
    let reads = plan(&spans, Limits::default());
    assert_eq!(shape(&reads), vec![(Holding, 100, 5, vec![0, 2, 3, 1])]);
    assert_eq!(reads[0].offset(spans[3].at), 1);
}

#[test]
fn the_gap_rule_is_inclusive_of_max_gap() {
    let limits = Limits {
        max_gap: 8,
        ..Limits::default()
    };
    // 0 then 9: registers 1..=8 unused (a gap of 8): one read.
    assert_eq!(
        shape(&plan(&[span(Input, 0, 1), span(Input, 9, 1)], limits)),
        vec![(Input, 0, 10, vec![0, 1])]
    );
    // 0 then 10: a gap of 9: two reads.
    assert_eq!(
        shape(&plan(&[span(Input, 0, 1), span(Input, 10, 1)], limits)),
        vec![(Input, 0, 1, vec![0]), (Input, 10, 1, vec![1])]
    );
    // max_gap 0 merges only adjacent points.
    let tight = Limits {
        max_gap: 0,
        ..limits
    };
    assert_eq!(
        shape(&plan(
            &[span(Input, 0, 2), span(Input, 2, 1), span(Input, 4, 1)],
            tight
        )),
        vec![(Input, 0, 3, vec![0, 1]), (Input, 4, 1, vec![2])]
    );
}

#[test]
fn a_multi_register_value_on_the_limit_is_never_split() {
    // 0..125 exactly fills one read: the f32 at 123 ends at 125.
    assert_eq!(
        shape(&plan(
            &[span(Holding, 0, 1), span(Holding, 123, 2)],
            Limits {
                max_gap: 200,
                ..Limits::default()
            }
        )),
        vec![(Holding, 0, 125, vec![0, 1])]
    );
    // An f32 at 124 would end at 126: it starts the next read, whole.
    assert_eq!(
        shape(&plan(
            &[span(Holding, 0, 1), span(Holding, 124, 2)],
            Limits {
                max_gap: 200,
                ..Limits::default()
            }
        )),
        vec![(Holding, 0, 1, vec![0]), (Holding, 124, 2, vec![1])]
    );
    // A device limit lower than the protocol's.
    let small = Limits {
        max_registers: 4,
        ..Limits::default()
    };
    assert_eq!(
        shape(&plan(
            &[
                span(Holding, 0, 2),
                span(Holding, 2, 2),
                span(Holding, 4, 4)
            ],
            small
        )),
        vec![(Holding, 0, 4, vec![0, 1]), (Holding, 4, 4, vec![2])]
    );
}

#[test]
fn coils_respect_the_2000_bit_limit_and_the_top_of_the_address_space() {
    let spans: Vec<Span> = (0..2001).map(|a| span(Coil, a, 1)).collect();
    let reads = plan(&spans, Limits::default());
    assert_eq!(reads.len(), 2);
    assert_eq!((reads[0].address, reads[0].count), (0, 2000));
    assert_eq!((reads[1].address, reads[1].count), (2000, 1));
    // The last register of the address space.
    assert_eq!(
        shape(&plan(
            &[span(Holding, 65534, 1), span(Holding, 65535, 1)],
            Limits::default()
        )),
        vec![(Holding, 65534, 2, vec![0, 1])]
    );
}

/// A typical energy meter map: 40 points scattered over holding and input
/// registers and coils, as a vendor manual lists them.
#[test]
fn a_scattered_40_point_map_costs_a_handful_of_requests() {
    let mut spans = Vec::new();
    // Voltages, currents, powers: f32 every 2 registers from input 0 (12).
    for i in 0..12 {
        spans.push(span(Input, i * 2, 2));
    }
    // Energy counters: u64 at input 100, 104, ..., 124 (7).
    for i in 0..7 {
        spans.push(span(Input, 100 + i * 4, 4));
    }
    // Frequency and power factor, with a hole before them: input 140, 142.
    spans.push(span(Input, 140, 2));
    spans.push(span(Input, 142, 2));
    // Settings: u16 holding registers scattered by 3 from 1000 (10).
    for i in 0..10 {
        spans.push(span(Holding, 1000 + i * 3, 1));
    }
    // Serial number string far away (1).
    spans.push(span(Holding, 5000, 8));
    // Relays and alarms: coils 0..8 (8).
    for i in 0..8 {
        spans.push(span(Coil, i, 1));
    }
    assert_eq!(spans.len(), 40);
    let reads = plan(&spans, Limits::default());
    assert_eq!(
        reads
            .iter()
            .map(|r| (r.table, r.address, r.count))
            .collect::<Vec<_>>(),
        vec![
            (Coil, 0, 8),
            // 0..24, then a hole of 76 registers: a separate read.
            (Input, 0, 24),
            // 100..128, a hole of 12 (> 8): separate.
            (Input, 100, 28),
            (Input, 140, 4),
            (Holding, 1000, 28),
            (Holding, 5000, 8),
        ]
    );
    // Every point is served exactly once.
    let mut served: Vec<usize> = reads.iter().flat_map(|r| r.points.clone()).collect();
    served.sort_unstable();
    assert_eq!(served, (0..40).collect::<Vec<_>>());
    // A bigger gap allowance trades wasted registers for fewer requests,
    // but never past 125 registers: the counter at 124 starts a new read.
    let wide = Limits {
        max_gap: 80,
        ..Limits::default()
    };
    assert_eq!(
        plan(&spans, wide)
            .iter()
            .map(|r| (r.table, r.address, r.count))
            .collect::<Vec<_>>(),
        vec![
            (Coil, 0, 8),
            (Input, 0, 124),
            (Input, 124, 20),
            (Holding, 1000, 28),
            (Holding, 5000, 8),
        ]
    );
}

#[test]
fn one_per_point_is_the_fallback_shape() {
    let spans = [span(Holding, 5, 2), span(Holding, 1, 1)];
    assert_eq!(
        shape(&one_per_point(&spans)),
        vec![(Holding, 1, 1, vec![1]), (Holding, 5, 2, vec![0])]
    );
}
