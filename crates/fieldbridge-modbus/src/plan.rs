//! Read coalescing: the fewest requests that cover a device's points.
//!
//! Points of one table are sorted by address and merged into one read
//! while the read stays within the protocol limit (125 registers, 2000
//! bits, or the device's lower `max_registers`/`max_bits`) and the hole
//! between two points is at most `max_gap` registers (`max_bit_gap`
//! bits). Overlapping points (a register and a bit of it, a u32 and its
//! low half) share the read. A point is never split over two reads.

use crate::config::{Location, Table};

/// Limits of one device's reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers per read.
    pub max_registers: u16,
    /// Most bits per read.
    pub max_bits: u16,
    /// Longest run of unused registers read to merge two reads.
    pub max_gap: u16,
    /// Longest run of unused bits read to merge two reads.
    pub max_bit_gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_registers: crate::config::MAX_REGISTERS,
            max_bits: crate::config::MAX_BITS,
            max_gap: 8,
            max_bit_gap: 64,
        }
    }
}

/// One point as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Where it starts.
    pub at: Location,
    /// Registers (or bits) it takes.
    pub width: u16,
}

/// One request of a poll cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The table read.
    pub table: Table,
    /// First address read.
    pub address: u16,
    /// Registers or bits read.
    pub count: u16,
    /// The points it serves, as indexes into the planned slice.
    pub points: Vec<usize>,
}

impl Read {
    /// The offset of a point's first register within this read's answer.
    pub fn offset(&self, at: Location) -> usize {
        usize::from(at.address.saturating_sub(self.address))
    }
}

/// Plans the reads for `spans`: ordered by table, then address.
pub fn plan(spans: &[Span], limits: Limits) -> Vec<Read> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| {
        let s = spans[i];
        (s.at.table, s.at.address, std::cmp::Reverse(s.width))
    });
    let mut reads: Vec<Read> = Vec::new();
    // End (exclusive) of the open read, as u32 so that 65535 + 1 fits.
    let mut end: u32 = 0;
    for i in order {
        let s = spans[i];
        let (limit, gap) = if s.at.table.is_bits() {
            (limits.max_bits, limits.max_bit_gap)
        } else {
            (limits.max_registers, limits.max_gap)
        };
        let start = u32::from(s.at.address);
        let stop = start + u32::from(s.width.max(1));
        if let Some(open) = reads.last_mut()
            && open.table == s.at.table
            && start <= end + u32::from(gap)
            && stop.max(end) - u32::from(open.address) <= u32::from(limit)
        {
            end = end.max(stop);
            open.count = (end - u32::from(open.address)) as u16;
            open.points.push(i);
            continue;
        }
        end = stop;
        reads.push(Read {
            table: s.at.table,
            address: s.at.address,
            count: (stop - start) as u16,
            points: vec![i],
        });
    }
    reads
}

/// One read per point: the fallback for a device that refuses a merged
/// read with an exception (a hole in its map), so that only the points
/// that really fail turn bad.
pub fn one_per_point(spans: &[Span]) -> Vec<Read> {
    let mut reads: Vec<Read> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| Read {
            table: s.at.table,
            address: s.at.address,
            count: s.width.max(1),
            points: vec![i],
        })
        .collect();
    reads.sort_by_key(|r| (r.table, r.address));
    reads
}

#[cfg(test)]
mod tests;
