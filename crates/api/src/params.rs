//! Request parameters: form values from the query string and a urlencoded
//! body, Prometheus's time and duration syntaxes.

use axum::http::HeaderMap;

use crate::ApiError;

/// All parameters of a request, query string first, then a form body.
pub fn collect(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        out.extend(form_urlencoded::parse(body).into_owned());
    }
    out
}

pub fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn all<'a>(params: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

/// The earliest time Prometheus's API accepts, in ms (its `minTime`, about 292 million
/// years before 1970), and the latest (`maxTime`).
pub const MIN_TIME_MS: i64 = MIN_TIME_S * 1000;
pub const MAX_TIME_MS: i64 = MAX_TIME_S * 1000 + 999;
const MIN_TIME_S: i64 = i64::MIN / 1000 + 62_135_596_801;
const MAX_TIME_S: i64 = i64::MAX / 1000 - 62_135_596_801;

/// A time parameter: Unix seconds (float) or RFC 3339, between [`MIN_TIME_MS`] and
/// [`MAX_TIME_MS`].
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {s:?} to a valid timestamp");
    let ms = match s.parse::<f64>() {
        Ok(f) => {
            // Whole seconds (exact in an f64 within the bounds), then the fraction.
            let secs = f.trunc();
            // NaN and infinities fail the comparison too.
            if !(secs >= MIN_TIME_S as f64 && secs <= MAX_TIME_S as f64) {
                return Err(invalid());
            }
            (secs as i64) * 1000 + ((f - secs) * 1000.0).round() as i64
        }
        Err(_) => rfc3339_ms(s).ok_or_else(invalid)?,
    };
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) { Ok(ms) } else { Err(invalid()) }
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        let padded = format!("{:0<3}", &frac[..frac.len().min(3)]);
        ms = padded.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() => {
            let v = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms)
}

pub fn time_param(params: &[(String, String)], name: &str, default: i64) -> Result<i64, ApiError> {
    match get(params, name) {
        None | Some("") => Ok(default),
        Some(v) => parse_time_ms(v).map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

pub use pharos_model::parse_duration_ms;

pub use pharos_model::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time_ms("1500000000.5"), Ok(1_500_000_000_500));
        assert_eq!(parse_time_ms("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("2015-07-01T22:10:51+02:00"), Ok(1_435_781_451_000));
        assert!(parse_time_ms("yesterday").is_err());
        assert!(parse_time_ms("NaN").is_err());
    }

    #[test]
    fn times_outside_prometheus_bounds_are_refused() {
        assert_eq!(parse_time_ms("-9223309901257974"), Ok(MIN_TIME_MS));
        assert_eq!(parse_time_ms("9223309901257974"), Ok(MAX_TIME_MS - 999));
        for bad in ["-1e16", "1e16", "1e300", "-Inf"] {
            assert_eq!(parse_time_ms(bad), Err(format!("cannot parse {bad:?} to a valid timestamp")));
        }
    }
}
