//! `tls_config` end to end: an https target served in the test with a
//! certificate for `scrape.pharos.test` signed by a test CA (the files in
//! `tests/data`, valid for a century), which requires a client certificate.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_cluster::{Cluster, LocalShard};
use pharos_model::Matcher;
use pharos_scrape::{Config, Scraper};
use pharos_storage::{MemStorage, Storage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;

const BODY: &str = "# TYPE secret gauge\nsecret 42\n";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Serves `BODY` over TLS on a loopback port, demanding a client
/// certificate signed by the test CA.
async fn serve_https() -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(data("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(data("server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(data("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = acceptor.accept(tcp).await else { return };
                if common::read_head(&mut conn).await.is_none() {
                    return;
                }
                let resp = common::exporter::response(common::exporter::TEXT_FORMAT, BODY);
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

fn up(storage: &MemStorage, job: &str) -> Option<f64> {
    let m = [Matcher::equal("__name__", "up"), Matcher::equal("job", job)];
    storage.select("default", &m, 0, i64::MAX).unwrap().first()?.samples.last().map(|s| s.v)
}

fn secret(storage: &MemStorage, job: &str) -> Option<f64> {
    let m = [Matcher::equal("__name__", "secret"), Matcher::equal("job", job)];
    storage.select("default", &m, 0, i64::MAX).unwrap().first()?.samples.last().map(|s| s.v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_with_ca_client_certificate_server_name_and_skip_verify() {
    let addr = serve_https().await;
    let (ca, cert, key) = (data("ca.pem"), data("client.pem"), data("client.key"));
    let (ca, cert, key) = (ca.display(), cert.display(), key.display());
    let job = |name: &str, tls: &str| {
        format!(
            "  - {{job_name: {name}, scheme: https, scrape_interval: 1s, tls_config: {{{tls}}}, static_configs: [{{targets: ['{addr}']}}]}}\n"
        )
    };
    let yaml = [
        "scrape_configs:\n".to_string(),
        job("verified", &format!("ca_file: {ca}, cert_file: {cert}, key_file: {key}, server_name: scrape.pharos.test")),
        job("skip_verify", &format!("insecure_skip_verify: true, cert_file: {cert}, key_file: {key}")),
        // The certificate names scrape.pharos.test, not 127.0.0.1.
        job("wrong_name", &format!("ca_file: {ca}, cert_file: {cert}, key_file: {key}")),
        // The server demands a client certificate.
        job("no_client_cert", &format!("ca_file: {ca}, server_name: scrape.pharos.test")),
        // The Mozilla roots do not include the test CA.
        job("default_roots", &format!("cert_file: {cert}, key_file: {key}, server_name: scrape.pharos.test")),
    ]
    .concat();
    let config = Config::parse(&yaml).unwrap();
    let storage = Arc::new(MemStorage::new());
    let sink = Arc::new(Cluster::new(vec![Arc::new(LocalShard::new(storage.clone()))]));
    let scraper = Scraper::start(&config, &[], "s", sink);
    let jobs = ["verified", "skip_verify", "wrong_name", "no_client_cert", "default_roots"];
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs.iter().any(|j| up(&storage, j).is_none()) {
        assert!(Instant::now() < deadline, "not every job scraped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up(&storage, "verified"), Some(1.0));
    assert_eq!(secret(&storage, "verified"), Some(42.0));
    assert_eq!(up(&storage, "skip_verify"), Some(1.0));
    for j in ["wrong_name", "no_client_cert", "default_roots"] {
        assert_eq!(up(&storage, j), Some(0.0), "{j}");
        assert_eq!(secret(&storage, j), None, "{j}");
    }
    scraper.stop();
}

#[test]
fn unreadable_certificate_files_are_named() {
    let t = pharos_scrape::http::TlsConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
    let e = pharos_scrape::tls::client_config(&t).unwrap_err();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let t = pharos_scrape::http::TlsConfig {
        cert_file: Some(data("client.pem")),
        key_file: Some(data("ca.pem")),
        ..Default::default()
    };
    let e = pharos_scrape::tls::client_config(&t).unwrap_err();
    assert!(e.contains("client key") && e.contains("ca.pem"), "{e}");
}
