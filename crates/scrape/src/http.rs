//! How a job talks HTTP to its targets: `basic_auth`, `authorization` and
//! `tls_config`, validated as Prometheus's `common/config` does, and the
//! `Authorization` header a scrape sends.
//!
//! Secrets in files (`password_file`, `credentials_file`) are read at every
//! scrape, trimmed of surrounding white space, so a rotated secret is picked
//! up without a restart. This module never logs a secret.
//!
//! TLS: `tls_config` becomes a rustls configuration ([`crate::tls`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub min_version: Option<String>,
}

/// The HTTP settings of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
    /// Follow HTTP redirects (Prometheus's default: true).
    pub follow_redirects: bool,
    /// Accepted for compatibility; scrapes use HTTP/1.1.
    pub enable_http2: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            basic_auth: None,
            authorization: None,
            tls_config: None,
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

impl ClientConfig {
    /// Folds the deprecated `bearer_token` / `bearer_token_file` into
    /// `authorization` as Prometheus does, then [`validate`](Self::validate)s.
    pub fn with_bearer_token(
        mut self,
        bearer_token: Option<String>,
        bearer_token_file: Option<PathBuf>,
    ) -> Result<Self, String> {
        if bearer_token.is_some() && bearer_token_file.is_some() {
            return Err("at most one of bearer_token & bearer_token_file must be configured".into());
        }
        if bearer_token.is_some() || bearer_token_file.is_some() {
            if self.basic_auth.is_some() {
                return Err(
                    "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured".into()
                );
            }
            if self.authorization.is_some() {
                return Err("authorization is not compatible with bearer_token & bearer_token_file".into());
            }
            self.authorization = Some(Authorization {
                kind: Some("Bearer".into()),
                credentials: bearer_token,
                credentials_file: bearer_token_file,
            });
        }
        self.validate()?;
        Ok(self)
    }

    /// The HTTP client of a job with these settings; the error (an
    /// unreadable or bad certificate file) fails every scrape of the job.
    pub fn build_client(&self) -> Result<reqwest::Client, String> {
        let redirects = if self.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        };
        let mut builder = reqwest::Client::builder().redirect(redirects);
        if let Some(t) = &self.tls_config {
            builder = builder.use_preconfigured_tls(crate::tls::client_config(t)?);
        }
        builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// Whether a scrape reads a secret file (blocking I/O).
    pub fn reads_files(&self) -> bool {
        self.basic_auth.as_ref().is_some_and(|b| b.password_file.is_some())
            || self.authorization.as_ref().is_some_and(|a| a.credentials_file.is_some())
    }

    /// Prometheus's checks; the error is the message without the field path.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.basic_auth.is_some() && self.authorization.is_some() {
            return Err("at most one of basic_auth, oauth2 & authorization must be configured".into());
        }
        if let Some(b) = &self.basic_auth
            && b.password.is_some()
            && b.password_file.is_some()
        {
            return Err("at most one of basic_auth password & password_file must be configured".into());
        }
        if let Some(a) = &mut self.authorization {
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return Err("at most one of authorization credentials & credentials_file must be configured".into());
            }
            let kind = a.kind.as_deref().map(str::trim).unwrap_or_default();
            if kind.eq_ignore_ascii_case("basic") {
                return Err(r#"authorization type cannot be set to "basic", use "basic_auth" instead"#.into());
            }
            a.kind = Some(if kind.is_empty() { "Bearer".into() } else { kind.to_string() });
        }
        if let Some(t) = &self.tls_config {
            if t.cert_file.is_some() && t.key_file.is_none() {
                return Err(
                    "exactly one of key or key_file must be configured when a client certificate is configured".into(),
                );
            }
            if t.key_file.is_some() && t.cert_file.is_none() {
                return Err(
                    "exactly one of cert or cert_file must be configured when a client key is configured".into()
                );
            }
            if let Some(v) = &t.min_version
                && !["TLS10", "TLS11", "TLS12", "TLS13"].contains(&v.as_str())
            {
                return Err(format!("unknown TLS version: {v}"));
            }
        }
        Ok(())
    }

    /// Makes relative file names relative to `dir` (the config file's folder).
    pub fn resolve_paths(&mut self, dir: &Path) {
        let files = [
            self.basic_auth.as_mut().and_then(|b| b.password_file.as_mut()),
            self.authorization.as_mut().and_then(|a| a.credentials_file.as_mut()),
        ];
        let tls = self.tls_config.as_mut().map(|t| [t.ca_file.as_mut(), t.cert_file.as_mut(), t.key_file.as_mut()]);
        for p in files.into_iter().chain(tls.into_iter().flatten()).flatten() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The `Authorization` header value of a scrape, reading secret files now.
    pub fn authorization_header(&self) -> Result<Option<String>, String> {
        if let Some(b) = &self.basic_auth {
            let password = match (&b.password, &b.password_file) {
                (_, Some(f)) => read_secret(f)?,
                (Some(p), None) => p.clone(),
                (None, None) => String::new(),
            };
            return Ok(Some(format!("Basic {}", base64(format!("{}:{password}", b.username).as_bytes()))));
        }
        if let Some(a) = &self.authorization {
            let credentials = match (&a.credentials, &a.credentials_file) {
                (_, Some(f)) => read_secret(f)?,
                (Some(c), None) => c.clone(),
                (None, None) => String::new(),
            };
            return Ok(Some(format!("{} {credentials}", a.kind.as_deref().unwrap_or("Bearer"))));
        }
        Ok(None)
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("unable to read secret file {}: {e}", path.display()))
}

/// Prometheus's `units.Base2Bytes`: an integer with `B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB`, `TB`/`TiB`, `PB`/`PiB` or `EB`/`EiB`, all powers of 1024 (`0`
/// alone is allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || format!("invalid size {s:?}");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().map_err(|_| err())?;
    let shift = match &s[digits..] {
        "" if n == 0 => 0,
        "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        "PB" | "PiB" => 50,
        "EB" | "EiB" => 60,
        _ => return Err(err()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(err)
}

/// Standard base64 with padding (RFC 4648), for `Basic` credentials.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(yaml: &str) -> Result<ClientConfig, String> {
        #[derive(Deserialize)]
        struct Raw {
            basic_auth: Option<BasicAuth>,
            authorization: Option<Authorization>,
            tls_config: Option<TlsConfig>,
        }
        let r: Raw = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let mut c = ClientConfig {
            basic_auth: r.basic_auth,
            authorization: r.authorization,
            tls_config: r.tls_config,
            ..ClientConfig::default()
        };
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn base64_rfc_4648_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn sizes_are_base_2() {
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["10", "MB", "10 MB", "10mb", "99999999EB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers() {
        let c = client("basic_auth: {username: Aladdin, password: open sesame}").unwrap();
        assert_eq!(c.authorization_header().unwrap().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let c = client("authorization: {credentials: tok}").unwrap();
        assert_eq!(c.authorization_header().unwrap().unwrap(), "Bearer tok");
        let c = client("authorization: {type: Token, credentials: tok}").unwrap();
        assert_eq!(c.authorization_header().unwrap().unwrap(), "Token tok");
        assert_eq!(client("{}").unwrap().authorization_header().unwrap(), None);
    }

    #[test]
    fn secret_files_are_read_at_each_scrape_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("pharos-scrape-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
        let mut c = client("basic_auth: {username: u, password_file: pw}").unwrap();
        c.resolve_paths(&dir);
        assert_eq!(c.authorization_header().unwrap().unwrap(), format!("Basic {}", base64(b"u:s3cret")));
        std::fs::write(dir.join("pw"), "rotated").unwrap();
        assert_eq!(c.authorization_header().unwrap().unwrap(), format!("Basic {}", base64(b"u:rotated")));
        std::fs::remove_file(dir.join("pw")).unwrap();
        assert!(c.authorization_header().unwrap_err().contains("unable to read secret file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn legacy_bearer_token_becomes_authorization() {
        let c = ClientConfig::default().with_bearer_token(Some("t".into()), None).unwrap();
        assert_eq!(c.authorization_header().unwrap().unwrap(), "Bearer t");
        let c = ClientConfig::default().with_bearer_token(None, Some("/f".into())).unwrap();
        assert!(c.reads_files());
        let e = ClientConfig::default().with_bearer_token(Some("t".into()), Some("/f".into())).unwrap_err();
        assert!(e.contains("at most one of bearer_token & bearer_token_file"), "{e}");
        let auth = client("authorization: {credentials: c}").unwrap();
        let e = auth.with_bearer_token(Some("t".into()), None).unwrap_err();
        assert!(e.contains("authorization is not compatible with bearer_token"), "{e}");
    }

    #[test]
    fn prometheus_validation_errors() {
        for (yaml, want) in [
            ("{basic_auth: {username: u}, authorization: {credentials: c}}", "at most one of basic_auth"),
            ("basic_auth: {username: u, password: p, password_file: f}", "password & password_file"),
            ("authorization: {credentials: c, credentials_file: f}", "credentials & credentials_file"),
            ("authorization: {type: basic}", "use \"basic_auth\" instead"),
            ("tls_config: {cert_file: c}", "key or key_file"),
            ("tls_config: {key_file: k}", "cert or cert_file"),
            ("tls_config: {min_version: TLS9}", "unknown TLS version"),
            ("tls_config: {insecure: true}", "unknown field `insecure`"),
        ] {
            let e = client(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
