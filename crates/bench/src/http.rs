//! The HTTP edge shared by the subcommands: the client, extra headers, and
//! how a failed request is named in the error tally.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::Error;

/// Parses repeated `--header 'Name: value'` flags.
pub fn parse_headers(raw: &[String]) -> Result<HeaderMap, Error> {
    let mut out = HeaderMap::new();
    for h in raw {
        let (name, value) =
            h.split_once(':').ok_or_else(|| Error::Invalid(format!("--header {h:?}: want 'Name: value'")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| Error::Invalid(format!("--header {h:?}: {e}")))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| Error::Invalid(format!("--header {h:?}: {e}")))?;
        out.append(name, value);
    }
    Ok(out)
}

/// A client with a per-request timeout and `headers` on every request.
pub fn client(timeout: Duration, headers: HeaderMap) -> Result<reqwest::Client, Error> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .user_agent(concat!("pharos-bench/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .build()?)
}

/// The tally key of a failed request.
pub fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

pub use pharos_model::now_ms;

/// `base` without a trailing slash.
pub fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_reject_garbage() {
        let h = parse_headers(&["X-Scope-OrgID: team-a".into(), "A:b".into()]).unwrap();
        assert_eq!(h["x-scope-orgid"], "team-a");
        assert_eq!(h["a"], "b");
        assert!(parse_headers(&["nocolon".into()]).is_err());
        assert!(parse_headers(&["bad name: x".into()]).is_err());
    }
}
