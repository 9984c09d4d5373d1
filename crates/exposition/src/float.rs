//! Number parsing with Go's `strconv` semantics, as Prometheus applies them.

/// Prometheus's `value.NormalNaN`: the bit pattern every parsed NaN gets
/// (it is also what Go's `math.NaN()` returns). Distinct from the
/// staleness marker.
const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Why a number was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    /// Not a number in the accepted syntax.
    Syntax,
    /// Well-formed but outside the type's range.
    Range,
}

/// Parses a float as Go's `strconv.ParseFloat(s, 64)` does, rejecting hex
/// floats and `_` digit separators like Prometheus's `parseFloat`.
///
/// Accepted: an optional sign, decimal digits with an optional point and an
/// optional exponent; `inf`/`infinity` (any case, optionally signed); `nan`
/// (any case, unsigned). A finite literal that overflows is a range error.
pub(crate) fn parse_float(s: &str) -> Result<f64, NumError> {
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Ok(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Ok(f64::from_bits(NORMAL_NAN_BITS));
    }
    if !is_decimal(unsigned.as_bytes()) {
        return Err(NumError::Syntax);
    }
    let v: f64 = s.parse().map_err(|_| NumError::Syntax)?;
    if v.is_infinite() { Err(NumError::Range) } else { Ok(v) }
}

/// `digits [. digits] | . digits`, then optionally `(e|E) [+|-] digits`.
fn is_decimal(b: &[u8]) -> bool {
    let digits = |from: usize| b.iter().skip(from).take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    let mut i = int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits(i + 1);
        i += 1 + frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// Parses a text-format timestamp: decimal digits only (no sign), as an i64.
pub(crate) fn parse_int(s: &str) -> Result<i64, NumError> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(NumError::Syntax);
    }
    s.parse().map_err(|_| NumError::Range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_float_forms() {
        let cases = [
            ("1", 1.0),
            ("-1.5", -1.5),
            ("+2", 2.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5e1", -5.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("2.5e-3", 0.0025),
            ("007", 7.0),
            ("1e-400", 0.0),
        ];
        for (s, want) in cases {
            assert_eq!(parse_float(s), Ok(want), "{s}");
        }
        for s in ["Inf", "+Inf", "inf", "INFINITY", "+infinity"] {
            assert_eq!(parse_float(s), Ok(f64::INFINITY), "{s}");
        }
        assert_eq!(parse_float("-Inf"), Ok(f64::NEG_INFINITY));
        for s in ["NaN", "nan", "NAN"] {
            assert_eq!(parse_float(s).map(f64::to_bits), Ok(NORMAL_NAN_BITS), "{s}");
        }
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for s in [
            "", "+", "-", ".", "e5", "1e", "1e+", "1.2.3", "abc", "1_000", "0x1p3", "0x10", "+NaN", "-nan", "infin",
            "1 ", " 1", "1,5", "--1", "1e5.0",
        ] {
            assert_eq!(parse_float(s), Err(NumError::Syntax), "{s:?}");
        }
        assert_eq!(parse_float("1e400"), Err(NumError::Range));
        assert_eq!(parse_float("-1e99999999999"), Err(NumError::Range));
    }

    #[test]
    fn integer_timestamps() {
        assert_eq!(parse_int("1395066363000"), Ok(1_395_066_363_000));
        assert_eq!(parse_int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int("9223372036854775808"), Err(NumError::Range));
        for s in ["", "-1", "+1", "1.5", "1e3"] {
            assert_eq!(parse_int(s), Err(NumError::Syntax), "{s}");
        }
    }
}
