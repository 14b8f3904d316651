//! NumericDate (RFC 7519 §2) as RFC 3339 text and as "in 42 s" / "3 min ago".

/// Seconds from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar
/// are handled by the day arithmetic below; this is the supported range.
const MIN_SECS: f64 = -62_135_596_800.0; // 0001-01-01T00:00:00Z
const MAX_SECS: f64 = 253_402_300_799.0; // 9999-12-31T23:59:59Z

/// Days since 1970-01-01 to (year, month, day); H. Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01; H. Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-01-01T00:00:00Z` (with `.123` when the time has a fraction);
/// `None` outside years 1–9999 or for a non-finite number.
pub fn rfc3339(secs: f64) -> Option<String> {
    if !secs.is_finite() || !(MIN_SECS..=MAX_SECS).contains(&secs) {
        return None;
    }
    let whole = secs.floor();
    let millis = ((secs - whole) * 1000.0).round() as i64;
    let (whole, millis) = if millis >= 1000 {
        (whole as i64 + 1, 0)
    } else {
        (whole as i64, millis)
    };
    let days = whole.div_euclid(86_400);
    let rem = whole.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let frac = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}")
    };
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z"
    ))
}

/// Parses `--now`: seconds since the epoch (`1767225600`, `1767225600.5`)
/// or RFC 3339 (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`,
/// fractions allowed, `t`/`z` and a space for `T` accepted).
pub fn parse_time(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Ok(n) = t.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let (mo, d) = (mo as u32, d as u32);
    // Reject 2026-02-31 and the like: the date must survive a round trip.
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = format!("0.{}", t.get(start..i)?).parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(secs as f64 + frac)
}

/// A duration in words: `42 s`, `3 min`, `5 h`, `12 days` (rounded down,
/// except under a minute where it is whole seconds).
pub fn span(secs: f64) -> String {
    let s = secs.abs();
    if s < 60.0 {
        // 0.4 s shows as 0 s; fractions rarely matter for a token.
        format!("{} s", s.round() as u64)
    } else if s < 3600.0 {
        let m = (s / 60.0).floor() as u64;
        let rest = (s - m as f64 * 60.0).floor() as u64;
        if rest == 0 || m >= 10 {
            format!("{m} min")
        } else {
            format!("{m} min {rest} s")
        }
    } else if s < 2.0 * 86_400.0 {
        let h = (s / 3600.0).floor() as u64;
        let m = ((s - h as f64 * 3600.0) / 60.0).floor() as u64;
        if m == 0 || h >= 10 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else if s < 2.0 * 365.25 * 86_400.0 {
        format!("{} days", (s / 86_400.0).floor() as u64)
    } else {
        format!("{} years", (s / (365.25 * 86_400.0)).floor() as u64)
    }
}

/// The registered time claims and how each reads relative to `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeClaim {
    Iat,
    Nbf,
    Exp,
}

impl TimeClaim {
    pub const ALL: [TimeClaim; 3] = [TimeClaim::Iat, TimeClaim::Nbf, TimeClaim::Exp];

    pub const fn name(self) -> &'static str {
        match self {
            TimeClaim::Iat => "iat",
            TimeClaim::Nbf => "nbf",
            TimeClaim::Exp => "exp",
        }
    }

    /// "expires in 42 s", "expired 3 min ago", "issued 10 s ago", ...
    pub fn relative(self, value: f64, now: f64) -> String {
        let d = value - now;
        let future = d > 0.0;
        let s = span(d);
        match (self, future) {
            (TimeClaim::Exp, true) => format!("expires in {s}"),
            (TimeClaim::Exp, false) if d == 0.0 => "expires now".to_owned(),
            (TimeClaim::Exp, false) => format!("expired {s} ago"),
            (TimeClaim::Iat, true) => format!("issued in the future, {s} from now"),
            (TimeClaim::Iat, false) => format!("issued {s} ago"),
            (TimeClaim::Nbf, true) => format!("not valid before {s} from now"),
            (TimeClaim::Nbf, false) => format!("valid since {s} ago"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(rfc3339(0.0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600.0).unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_300_819_380.0).unwrap(), "2011-03-22T18:43:00Z");
        assert_eq!(rfc3339(951_782_400.0).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1.0).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(1.5).unwrap(), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339(1.9999).unwrap(), "1970-01-01T00:00:02Z");
        assert_eq!(rfc3339(MAX_SECS).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(MIN_SECS).unwrap(), "0001-01-01T00:00:00Z");
        assert!(rfc3339(MAX_SECS + 1.0).is_none());
        assert!(rfc3339(f64::NAN).is_none());
        assert!(rfc3339(1e300).is_none());
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [0.0, 1_767_225_600.0, 951_782_400.0, -86_400.0, 1.5] {
            assert_eq!(parse_time(&rfc3339(secs).unwrap()), Some(secs));
        }
        assert_eq!(parse_time("1767225600"), Some(1_767_225_600.0));
        assert_eq!(parse_time(" 12.25 "), Some(12.25));
        assert_eq!(
            parse_time("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600.0)
        );
        assert_eq!(
            parse_time("2025-12-31t19:00:00-05:00"),
            Some(1_767_225_600.0)
        );
        assert_eq!(parse_time("2026-01-01 00:00:00z"), Some(1_767_225_600.0));
        for bad in [
            "",
            "soon",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00Zjunk",
            "2026-0a-01T00:00:00Z",
            "inf",
            "NaN",
            "2026-01-01T00:00:00+1é:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn spans_and_relative_text() {
        assert_eq!(span(42.0), "42 s");
        assert_eq!(span(-180.0), "3 min");
        assert_eq!(span(90.0), "1 min 30 s");
        assert_eq!(span(3600.0 * 5.0), "5 h");
        assert_eq!(span(3600.0 + 120.0), "1 h 2 min");
        assert_eq!(span(86_400.0 * 12.0), "12 days");
        assert_eq!(span(86_400.0 * 365.25 * 15.0), "15 years");
        assert_eq!(TimeClaim::Exp.relative(142.0, 100.0), "expires in 42 s");
        assert_eq!(TimeClaim::Exp.relative(100.0, 280.0), "expired 3 min ago");
        assert_eq!(TimeClaim::Exp.relative(5.0, 5.0), "expires now");
        assert_eq!(TimeClaim::Iat.relative(90.0, 100.0), "issued 10 s ago");
        assert_eq!(
            TimeClaim::Nbf.relative(160.0, 100.0),
            "not valid before 1 min from now"
        );
    }
}
