//! NMEA 0183 sentences: checksum verification and the fields of GGA, RMC
//! (position, time), MWV (wind) and MTW (water temperature).
//!
//! A point names a field as `SENTENCE.field`, e.g. `GGA.latitude`; the
//! talker (GP, GN, WI, II, …) is ignored so that any receiver works.

/// A field value of a sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A measurement.
    Number(f64),
    /// A count or code.
    Int(i64),
    /// A validity flag.
    Bool(bool),
    /// Anything else (times, units, references).
    Text(String),
}

/// A verified sentence of a supported type.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    /// The sentence type without talker, e.g. `GGA`.
    pub kind: String,
    /// Its fields by name; empty fields (no fix yet) are absent.
    pub fields: Vec<(&'static str, Field)>,
}

impl Sentence {
    /// A field by name.
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }
}

/// Why a line is not a usable sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmeaError {
    /// Not `$…` or `!…`.
    #[error("not an NMEA sentence")]
    NotNmea,
    /// No `*HH` checksum, or it does not match.
    #[error("bad NMEA checksum")]
    BadChecksum,
    /// A sentence type this version does not read.
    #[error("unsupported NMEA sentence {0}")]
    Unsupported(String),
    /// A field that should be a number is not.
    #[error("malformed {kind} field {field}")]
    BadField {
        /// Sentence type.
        kind: String,
        /// Field name.
        field: &'static str,
    },
}

/// The field names each supported sentence defines, for config checks.
pub const FIELDS: &[(&str, &[&str])] = &[
    (
        "GGA",
        &[
            "time",
            "latitude",
            "longitude",
            "fix_quality",
            "satellites",
            "hdop",
            "altitude",
        ],
    ),
    (
        "RMC",
        &[
            "time",
            "valid",
            "latitude",
            "longitude",
            "speed_knots",
            "course",
            "date",
        ],
    ),
    (
        "MWV",
        &[
            "wind_angle",
            "reference",
            "wind_speed",
            "wind_speed_unit",
            "valid",
        ],
    ),
    ("MTW", &["temperature"]),
];

/// Whether `locator` (`GGA.latitude`) names a field this module reads.
pub fn known_field(locator: &str) -> bool {
    locator.split_once('.').is_some_and(|(kind, field)| {
        FIELDS
            .iter()
            .any(|(k, fields)| *k == kind && fields.contains(&field))
    })
}

/// Verifies the checksum and returns the data between `$` and `*`.
fn verified(line: &str) -> Result<&str, NmeaError> {
    let body = line
        .strip_prefix('$')
        .or_else(|| line.strip_prefix('!'))
        .ok_or(NmeaError::NotNmea)?;
    let (data, sum) = body.rsplit_once('*').ok_or(NmeaError::BadChecksum)?;
    let want = u8::from_str_radix(sum.trim(), 16).map_err(|_| NmeaError::BadChecksum)?;
    let got = data.bytes().fold(0u8, |acc, b| acc ^ b);
    if got == want {
        Ok(data)
    } else {
        Err(NmeaError::BadChecksum)
    }
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Sentence, NmeaError> {
    let data = verified(line.trim())?;
    let mut parts = data.split(',');
    let address = parts.next().unwrap_or_default();
    // Talker (2 chars) + type; proprietary `P…` addresses are not supported.
    let kind = address.get(2..).unwrap_or_default().to_owned();
    let f: Vec<&str> = parts.collect();
    let at = |i: usize| f.get(i).copied().unwrap_or_default();
    let mut out = Vec::new();
    let num = |out: &mut Vec<(&'static str, Field)>,
               name: &'static str,
               s: &str|
     -> Result<(), NmeaError> {
        if s.is_empty() {
            return Ok(());
        }
        let v: f64 = s.parse().map_err(|_| NmeaError::BadField {
            kind: kind.clone(),
            field: name,
        })?;
        out.push((name, Field::Number(v)));
        Ok(())
    };
    let int = |out: &mut Vec<(&'static str, Field)>,
               name: &'static str,
               s: &str|
     -> Result<(), NmeaError> {
        if s.is_empty() {
            return Ok(());
        }
        let v: i64 = s.parse().map_err(|_| NmeaError::BadField {
            kind: kind.clone(),
            field: name,
        })?;
        out.push((name, Field::Int(v)));
        Ok(())
    };
    let text = |out: &mut Vec<(&'static str, Field)>, name: &'static str, s: &str| {
        if !s.is_empty() {
            out.push((name, Field::Text(s.to_owned())));
        }
    };
    let coord = |out: &mut Vec<(&'static str, Field)>,
                 name: &'static str,
                 v: &str,
                 hemi: &str|
     -> Result<(), NmeaError> {
        if v.is_empty() {
            return Ok(());
        }
        let bad = || NmeaError::BadField {
            kind: kind.clone(),
            field: name,
        };
        // ddmm.mmmm (latitude) or dddmm.mmmm (longitude).
        let dot = v.find('.').unwrap_or(v.len());
        if dot < 2 {
            return Err(bad());
        }
        let degrees: f64 = v[..dot - 2].parse().map_err(|_| bad())?;
        let minutes: f64 = v[dot - 2..].parse().map_err(|_| bad())?;
        let mut d = degrees + minutes / 60.0;
        match hemi {
            "S" | "W" => d = -d,
            "N" | "E" => {}
            _ => return Err(bad()),
        }
        out.push((name, Field::Number(d)));
        Ok(())
    };
    match kind.as_str() {
        "GGA" => {
            text(&mut out, "time", at(0));
            coord(&mut out, "latitude", at(1), at(2))?;
            coord(&mut out, "longitude", at(3), at(4))?;
            int(&mut out, "fix_quality", at(5))?;
            int(&mut out, "satellites", at(6))?;
            num(&mut out, "hdop", at(7))?;
            num(&mut out, "altitude", at(8))?;
        }
        "RMC" => {
            text(&mut out, "time", at(0));
            if !at(1).is_empty() {
                out.push(("valid", Field::Bool(at(1) == "A")));
            }
            coord(&mut out, "latitude", at(2), at(3))?;
            coord(&mut out, "longitude", at(4), at(5))?;
            num(&mut out, "speed_knots", at(6))?;
            num(&mut out, "course", at(7))?;
            text(&mut out, "date", at(8));
        }
        "MWV" => {
            num(&mut out, "wind_angle", at(0))?;
            text(&mut out, "reference", at(1));
            num(&mut out, "wind_speed", at(2))?;
            text(&mut out, "wind_speed_unit", at(3));
            if !at(4).is_empty() {
                out.push(("valid", Field::Bool(at(4) == "A")));
            }
        }
        "MTW" => num(&mut out, "temperature", at(0))?,
        _ => return Err(NmeaError::Unsupported(address.to_owned())),
    }
    Ok(Sentence { kind, fields: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends the checksum, so that vectors stay readable.
    fn sentence(body: &str) -> String {
        let sum = body.bytes().fold(0u8, |a, b| a ^ b);
        format!("${body}*{sum:02X}")
    }

    #[test]
    fn reference_sentences_verify_and_parse() {
        // Widely published examples (e.g. the gpsd NMEA documentation).
        let gga =
            parse("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47").unwrap();
        assert_eq!(gga.kind, "GGA");
        let Some(Field::Number(lat)) = gga.get("latitude") else {
            panic!("{gga:?}")
        };
        assert!((lat - 48.1173).abs() < 1e-4, "{lat}");
        let Some(Field::Number(lon)) = gga.get("longitude") else {
            panic!()
        };
        assert!((lon - 11.516_667).abs() < 1e-5, "{lon}");
        assert_eq!(gga.get("satellites"), Some(&Field::Int(8)));
        assert_eq!(gga.get("altitude"), Some(&Field::Number(545.4)));

        let rmc =
            parse("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A").unwrap();
        assert_eq!(rmc.get("valid"), Some(&Field::Bool(true)));
        assert_eq!(rmc.get("speed_knots"), Some(&Field::Number(22.4)));
        assert_eq!(rmc.get("date"), Some(&Field::Text("230394".into())));
    }

    #[test]
    fn wind_and_water_temperature() {
        let mwv = parse(&sentence("WIMWV,214.8,R,0.1,K,A")).unwrap();
        assert_eq!(mwv.get("wind_angle"), Some(&Field::Number(214.8)));
        assert_eq!(mwv.get("wind_speed_unit"), Some(&Field::Text("K".into())));
        let mtw = parse(&sentence("YXMTW,17.75,C")).unwrap();
        assert_eq!(mtw.get("temperature"), Some(&Field::Number(17.75)));
    }

    #[test]
    fn southern_and_western_coordinates_are_negative_and_empty_fields_absent() {
        let gga = parse(&sentence(
            "GNGGA,000000,3351.000,S,15112.000,W,0,00,,,M,,M,,",
        ))
        .unwrap();
        let Some(Field::Number(lat)) = gga.get("latitude") else {
            panic!()
        };
        assert!(*lat < -33.8);
        assert_eq!(gga.get("altitude"), None, "no fix, no altitude");
    }

    #[test]
    fn bad_checksums_and_garbage_are_refused() {
        assert_eq!(
            parse("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48"),
            Err(NmeaError::BadChecksum)
        );
        assert_eq!(parse("$GPGGA,123519"), Err(NmeaError::BadChecksum));
        assert_eq!(parse("T=21.5"), Err(NmeaError::NotNmea));
        assert!(matches!(
            parse(&sentence("GPGSV,1,1,00")),
            Err(NmeaError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&sentence("YXMTW,warm,C")),
            Err(NmeaError::BadField { .. })
        ));
        assert!(matches!(
            parse(&sentence(
                "GPGGA,1,4807.038,X,01131.000,E,1,08,0.9,1,M,1,M,,"
            )),
            Err(NmeaError::BadField { .. })
        ));
    }

    #[test]
    fn locators_are_checked_against_the_supported_fields() {
        assert!(known_field("GGA.latitude"));
        assert!(known_field("MTW.temperature"));
        assert!(!known_field("GGA.lattitude"));
        assert!(!known_field("XYZ.latitude"));
        assert!(!known_field("latitude"));
    }
}
