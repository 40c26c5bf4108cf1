//! The on-disk form of a [`Snapshot`]: a small hand-written binary codec.
//!
//! Hand-written rather than serde because the gateway writes thousands of
//! snapshots a second on a Raspberry Pi, because every byte is paid for on
//! an SD card, and because a record must stay readable by every later
//! version: the layout below is the whole contract, with nothing implied by
//! a derive that a refactoring of core's types could change.
//!
//! ```text
//! record  = format:u8 (= FORMAT) seqnr:uvar count:uvar sample*count
//! sample  = header:u8 point:str value unit:str? reason:str? age:ivar
//! header  = bits 0-2 value kind: 0 false, 1 true, 2 int, 3 float (f64),
//!                                4 float (exactly an f32), 5 text
//!           bits 3-4 quality: 0 good, 1 uncertain, 2 bad (reason follows)
//!           bit  5   unit present
//!           bits 6-7 zero
//! value   = int: ivar | f64: 8 bytes LE | f32: 4 bytes LE | text: str | bool: nothing
//! age     = item id (µs, ×1000) minus the sample's time, in nanoseconds
//! str     = len:uvar UTF-8 bytes
//! uvar    = unsigned LEB128 (7 bits a byte, at most 10 bytes)
//! ivar    = zig-zag, then uvar
//! ```
//!
//! The item id is the record's key, not part of the record. A sample's time
//! is stored as its age relative to the item: a sample read in the same
//! poll as the item is published takes 2–3 bytes, one a minute old 5–6, and
//! the time comes back to the nanosecond. (An age beyond ±292 years is
//! clamped; such a clock is broken anyway.) A float that is exactly an `f32`
//! (21.5, 0, 1234.5) takes 4 bytes instead of 8, bit for bit the same value.
//!
//! A later version that changes the layout writes a new `FORMAT` and keeps
//! reading this one. A record this version cannot read is a
//! [`DecodeError`], never a panic: the store skips it and says so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_core::{IdError, PointId, Quality, Reading, Sample, Unit, Value};

use crate::Snapshot;

/// The record format this version writes (the first byte of every record).
pub const FORMAT: u8 = 1;

const KIND_MASK: u8 = 0b0000_0111;
const FALSE: u8 = 0;
const TRUE: u8 = 1;
const INT: u8 = 2;
const F64: u8 = 3;
const F32: u8 = 4;
const TEXT: u8 = 5;
const QUALITY_SHIFT: u8 = 3;
const QUALITY_MASK: u8 = 0b0001_1000;
const UNCERTAIN: u8 = 1;
const BAD: u8 = 2;
const HAS_UNIT: u8 = 0b0010_0000;
const RESERVED: u8 = 0b1100_0000;

/// Why a record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record has no bytes at all.
    #[error("the record is empty")]
    Empty,
    /// The record's format byte is not one this version knows (a newer
    /// version wrote it, or the byte is damaged).
    #[error("record format {0} is unknown (this version reads format {FORMAT})")]
    Format(u8),
    /// The record ends in the middle of a field.
    #[error("the record is truncated")]
    Truncated,
    /// Bytes follow the last sample.
    #[error("{0} bytes follow the last sample")]
    Trailing(usize),
    /// A number does not fit in 64 bits.
    #[error("a number does not fit in 64 bits")]
    Overflow,
    /// A text field is not UTF-8.
    #[error("a text field is not UTF-8")]
    Utf8,
    /// A sample's point is not a valid point id.
    #[error("point {0:?}: {1}")]
    Point(String, IdError),
    /// A sample's header has bits this format does not define.
    #[error("sample header {0:#04x} is not one format {FORMAT} defines")]
    Header(u8),
    /// A sample's time cannot be represented.
    #[error("a sample's time is out of range")]
    Time,
}

/// Appends the record of `snapshot` to `out` (its id is the key, not part
/// of the record).
pub fn encode(snapshot: &Snapshot, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_uvar(out, snapshot.seqnr);
    put_uvar(out, snapshot.samples.len() as u64);
    let base = i128::from(snapshot.id) * 1000;
    for sample in &snapshot.samples {
        let r = &sample.reading;
        let mut header = match &r.value {
            Value::Bool(false) => FALSE,
            Value::Bool(true) => TRUE,
            Value::Int(_) => INT,
            Value::Float(f) if is_f32(*f) => F32,
            Value::Float(_) => F64,
            Value::Text(_) => TEXT,
        };
        header |= match &r.quality {
            Quality::Good => 0,
            Quality::Uncertain => UNCERTAIN << QUALITY_SHIFT,
            Quality::Bad { .. } => BAD << QUALITY_SHIFT,
        };
        if r.unit.is_some() {
            header |= HAS_UNIT;
        }
        out.push(header);
        put_str(out, r.point.as_str());
        match &r.value {
            Value::Bool(_) => {}
            Value::Int(i) => put_ivar(out, *i),
            Value::Float(f) if is_f32(*f) => out.extend_from_slice(&(*f as f32).to_le_bytes()),
            Value::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
            Value::Text(t) => put_str(out, t),
        }
        if let Some(unit) = &r.unit {
            put_str(out, &unit.0);
        }
        if let Quality::Bad { reason } = &r.quality {
            put_str(out, reason);
        }
        let age = base.saturating_sub(nanos(sample.at));
        put_ivar(
            out,
            i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX }),
        );
    }
}

/// Reads back the record of item `id`.
pub fn decode(id: u64, bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if format != FORMAT {
        return Err(DecodeError::Format(format));
    }
    let mut r = Reader(rest);
    let seqnr = r.uvar()?;
    let count = r.uvar()?;
    // Every sample takes at least 3 bytes: a damaged count must not make us
    // reserve gigabytes.
    let mut samples =
        Vec::with_capacity(usize::try_from(count).map_or(0, |c| c.min(r.0.len() / 3)));
    let base = i128::from(id) * 1000;
    for _ in 0..count {
        samples.push(r.sample(base)?);
    }
    if !r.0.is_empty() {
        return Err(DecodeError::Trailing(r.0.len()));
    }
    Ok(Snapshot { id, seqnr, samples })
}

fn is_f32(f: f64) -> bool {
    f64::from(f as f32).to_bits() == f.to_bits()
}

/// Nanoseconds since the epoch, negative before it.
fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => i128::try_from(e.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    }
}

fn time(nanos: i128) -> Option<SystemTime> {
    let d = |n: u128| {
        let secs = u64::try_from(n / 1_000_000_000).ok()?;
        Some(Duration::new(secs, (n % 1_000_000_000) as u32))
    };
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(d(nanos.unsigned_abs())?)
    } else {
        UNIX_EPOCH.checked_sub(d(nanos.unsigned_abs())?)
    }
}

fn put_uvar(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_ivar(out: &mut Vec<u8>, v: i64) {
    put_uvar(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvar(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    fn uvar(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Overflow);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Overflow)
    }

    fn ivar(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvar()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::try_from(self.uvar()?).map_err(|_| DecodeError::Truncated)?;
        std::str::from_utf8(self.bytes(len)?).map_err(|_| DecodeError::Utf8)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn sample(&mut self, base: i128) -> Result<Sample, DecodeError> {
        let header = self.byte()?;
        let quality = (header & QUALITY_MASK) >> QUALITY_SHIFT;
        if header & RESERVED != 0 || header & KIND_MASK > TEXT || quality > BAD {
            return Err(DecodeError::Header(header));
        }
        let point = self.str()?;
        let point = PointId::new(point).map_err(|e| DecodeError::Point(point.to_owned(), e))?;
        let value = match header & KIND_MASK {
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            INT => Value::Int(self.ivar()?),
            F64 => Value::Float(f64::from_le_bytes(self.array()?)),
            F32 => Value::Float(f64::from(f32::from_le_bytes(self.array()?))),
            _ => Value::Text(self.str()?.to_owned()),
        };
        let unit = if header & HAS_UNIT != 0 {
            Some(Unit(self.str()?.to_owned()))
        } else {
            None
        };
        let quality = match quality {
            0 => Quality::Good,
            UNCERTAIN => Quality::Uncertain,
            _ => Quality::Bad {
                reason: self.str()?.to_owned(),
            },
        };
        let age = self.ivar()?;
        let at = time(base - i128::from(age)).ok_or(DecodeError::Time)?;
        Ok(Sample {
            at,
            reading: Reading {
                point,
                value,
                unit,
                quality,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ID: u64 = 1_795_582_800_123_456;

    fn at(id_micros: u64, minus_nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(id_micros) - Duration::from_nanos(minus_nanos)
    }

    fn sample(
        point: &str,
        value: Value,
        unit: Option<&str>,
        quality: Quality,
        at: SystemTime,
    ) -> Sample {
        Sample {
            at,
            reading: Reading {
                point: PointId::new(point).unwrap(),
                value,
                unit: unit.map(|u| Unit(u.into())),
                quality,
            },
        }
    }

    /// Every value kind, quality and unit case, and times around the item's.
    fn every_case() -> Snapshot {
        Snapshot {
            id: ID,
            seqnr: 7,
            samples: vec![
                sample(
                    "temperature",
                    Value::Float(21.5),
                    Some("°C"),
                    Quality::Good,
                    at(ID, 0),
                ),
                sample(
                    "humidity",
                    Value::Float(0.1 + 0.2),
                    Some("%"),
                    Quality::Uncertain,
                    at(ID, 1_234_567),
                ),
                sample(
                    "pump",
                    Value::Bool(true),
                    None,
                    Quality::Good,
                    at(ID, 60_000_000_001),
                ),
                sample("alarm", Value::Bool(false), None, Quality::Good, at(ID, 1)),
                sample("count", Value::Int(-42), None, Quality::Good, at(ID + 5, 0)),
                sample(
                    "big",
                    Value::Int(i64::MIN),
                    Some("Wh"),
                    Quality::Good,
                    at(ID, 999),
                ),
                sample("max", Value::Int(i64::MAX), None, Quality::Good, at(ID, 0)),
                sample(
                    "pressure",
                    Value::Float(f64::NAN),
                    Some("bar"),
                    Quality::Bad {
                        reason: "modbus exception: illegal data address".into(),
                    },
                    at(ID, 3_600_000_000_000),
                ),
                sample("zero", Value::Float(-0.0), None, Quality::Good, at(ID, 0)),
                sample(
                    "inf",
                    Value::Float(f64::INFINITY),
                    None,
                    Quality::Good,
                    UNIX_EPOCH,
                ),
                sample(
                    "state",
                    Value::Text("ON — ok".into()),
                    None,
                    Quality::Bad {
                        reason: String::new(),
                    },
                    at(ID, 0),
                ),
                sample(
                    "old",
                    Value::Text(String::new()),
                    Some(""),
                    Quality::Good,
                    UNIX_EPOCH - Duration::from_nanos(1),
                ),
            ],
        }
    }

    fn round_trip(s: &Snapshot) -> Snapshot {
        let mut buf = Vec::new();
        encode(s, &mut buf);
        decode(s.id, &buf).unwrap()
    }

    /// NaN is not equal to itself: compare floats bit for bit.
    fn same(a: &Snapshot, b: &Snapshot) -> bool {
        let bits = |s: &Snapshot| -> Vec<String> {
            s.samples
                .iter()
                .map(|x| match &x.reading.value {
                    Value::Float(f) => format!("{:?} {:x}", x.reading.point, f.to_bits()),
                    _ => String::new(),
                })
                .collect()
        };
        let strip = |s: &Snapshot| {
            let mut s = s.clone();
            for x in &mut s.samples {
                if let Value::Float(f) = &mut x.reading.value {
                    *f = 0.0;
                }
            }
            s
        };
        bits(a) == bits(b) && strip(a) == strip(b)
    }

    #[test]
    fn every_kind_of_sample_comes_back_exactly() {
        let s = every_case();
        assert!(same(&round_trip(&s), &s));
        let empty = Snapshot {
            id: 0,
            seqnr: 0,
            samples: vec![],
        };
        assert_eq!(round_trip(&empty), empty);
        let max = Snapshot {
            id: u64::MAX,
            seqnr: u64::MAX,
            samples: every_case()
                .samples
                .into_iter()
                .map(|mut x| {
                    x.at = at(u64::MAX, 1_000);
                    x
                })
                .collect(),
        };
        assert!(same(&round_trip(&max), &max));
    }

    #[test]
    fn an_age_beyond_292_years_is_clamped() {
        let mut s = every_case();
        s.samples.truncate(1);
        s.samples[0].at = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
        let back = round_trip(&s);
        let clamped =
            UNIX_EPOCH + Duration::from_micros(ID) + Duration::from_nanos(i64::MAX as u64 + 1);
        assert_eq!(back.samples[0].at, clamped);
    }

    #[test]
    fn a_ten_point_snapshot_is_small() {
        let s = Snapshot {
            id: ID,
            seqnr: 12345,
            samples: (0..10)
                .map(|i| {
                    sample(
                        &format!("point-{i}"),
                        Value::Float(20.1 + f64::from(i) / 7.0),
                        Some("°C"),
                        Quality::Good,
                        at(ID, 2_000_000),
                    )
                })
                .collect(),
        };
        assert!(s.samples.iter().all(|x| match x.reading.value {
            Value::Float(f) => !is_f32(f),
            _ => false,
        }));
        let mut buf = Vec::new();
        encode(&s, &mut buf);
        // header 1 + point 8 + f64 8 + unit 4 + age 4 = 25 a sample.
        assert_eq!(buf.len(), 1 + 2 + 1 + 10 * 25, "{buf:?}");
        assert_eq!(decode(ID, &buf).unwrap(), s);
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let s = Snapshot {
            id: 1,
            seqnr: 300,
            samples: vec![sample(
                "t",
                Value::Int(-2),
                Some("W"),
                Quality::Bad { reason: "x".into() },
                at(1, 0),
            )],
        };
        let mut buf = Vec::new();
        encode(&s, &mut buf);
        assert_eq!(
            buf,
            [
                FORMAT,
                0xac,
                0x02,
                1,
                INT | BAD << QUALITY_SHIFT | HAS_UNIT,
                1,
                b't',
                3,
                1,
                b'W',
                1,
                b'x',
                0
            ]
        );
    }

    #[test]
    fn damaged_records_are_errors_never_panics() {
        let mut good = Vec::new();
        encode(&every_case(), &mut good);
        // Every truncation.
        for n in 0..good.len() {
            assert!(decode(ID, &good[..n]).is_err(), "truncated to {n}");
        }
        // Every single-byte corruption, with a few patterns: must not panic
        // (most are errors, some decode to other valid values).
        for i in 0..good.len() {
            for x in [0x01, 0x80, 0xff, 0x40] {
                let mut bad = good.clone();
                bad[i] ^= x;
                let _ = decode(ID, &bad);
            }
        }
        // A deterministic spray of random bytes.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode(ID, &[&[FORMAT][..], &bytes].concat());
        }
    }

    #[test]
    fn specific_damage_is_named() {
        assert_eq!(decode(1, &[]), Err(DecodeError::Empty));
        assert_eq!(decode(1, &[9, 0, 0]), Err(DecodeError::Format(9)));
        assert_eq!(decode(1, &[FORMAT, 0, 0, 0]), Err(DecodeError::Trailing(1)));
        assert_eq!(
            decode(
                1,
                &[
                    FORMAT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0
                ]
            ),
            Err(DecodeError::Overflow)
        );
        assert_eq!(
            decode(1, &[FORMAT, 0, 1, 0x40, 1, b'a', 0]),
            Err(DecodeError::Header(0x40))
        );
        assert_eq!(
            decode(1, &[FORMAT, 0, 1, 6, 1, b'a', 0]),
            Err(DecodeError::Header(6))
        );
        assert_eq!(
            decode(1, &[FORMAT, 0, 1, 0, 1, 0xff, 0]),
            Err(DecodeError::Utf8)
        );
        assert_eq!(
            decode(1, &[FORMAT, 0, 1, 0, 1, b'A', 0]),
            Err(DecodeError::Point("A".into(), IdError::BadChar('A')))
        );
        // A count far larger than the record reserves nothing and fails.
        assert_eq!(
            decode(1, &[FORMAT, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(DecodeError::Truncated)
        );
        // An age that puts the sample before what SystemTime holds is refused,
        // not wrapped: the largest age, at id 0, is 292 years before 1970,
        // which SystemTime holds on Linux, so this one decodes.
        let mut rec = vec![FORMAT, 0, 1, 0, 1, b'a'];
        put_ivar(&mut rec, i64::MAX);
        assert!(decode(0, &rec).is_ok());
    }

    #[test]
    fn varints_cover_the_whole_range() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_uvar(&mut buf, v);
            assert!(buf.len() <= 10);
            let mut r = Reader(&buf);
            assert_eq!(r.uvar(), Ok(v));
            assert!(r.0.is_empty());
        }
        for v in [0, 1, -1, 63, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_ivar(&mut buf, v);
            assert_eq!(Reader(&buf).ivar(), Ok(v));
        }
    }
}
