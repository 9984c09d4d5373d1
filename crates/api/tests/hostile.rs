//! Hostile remote_write bodies and stalled connections against an
//! in-process listener: each is refused or bounded, and other clients are
//! still answered.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_api::{HttpLimits, IngestLimits, Metrics};
use pharos_cluster::{Cluster, LocalShard};
use pharos_model::Matcher;
use pharos_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use pharos_storage::{MemStorage, Storage};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    addr: SocketAddr,
    tsdb: Arc<MemStorage>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(ingest: IngestLimits, http: HttpLimits) -> Server {
    let tsdb = Arc::new(MemStorage::new());
    let cluster = Arc::new(Cluster::new(vec![Arc::new(LocalShard::new(tsdb.clone()))]));
    let metrics = Metrics::new();
    let router = pharos_api::write_routes(cluster, metrics.clone(), ingest).merge(pharos_api::common_routes(metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        pharos_api::serve(listener, router, &http, async move {
            let _ = rx.await;
        })
        .await
    });
    Server { addr, tsdb, stop: Some(tx) }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|&(t, v)| Sample { timestamp: t, value: v }).collect(),
    }
}

fn compress(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn body(ts: Vec<TimeSeries>) -> Vec<u8> {
    compress(&WriteRequest { timeseries: ts, metadata: vec![] }.encode_to_vec())
}

async fn post(addr: SocketAddr, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn stored(tsdb: &MemStorage, name: &str) -> usize {
    let m = [Matcher::new(pharos_model::MatchOp::Equal, "__name__", name).unwrap()];
    tsdb.select(pharos_model::DEFAULT_TENANT, &m, i64::MIN, i64::MAX).unwrap().iter().map(|s| s.samples.len()).sum()
}

/// A snappy block's header alone: the decoded length as a varint.
fn declares(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

#[tokio::test]
async fn a_huge_declared_length_is_refused_before_decompressing() {
    let s = start(IngestLimits::default(), HttpLimits::default()).await;
    let mut lie = declares(3 << 30);
    lie.extend([0u8; 16]);
    let (code, msg) = post(s.addr, lie).await;
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("decodes to 3221225472 bytes") && msg.contains("--remote-write-max-decoded-bytes"), "{msg}");
}

#[tokio::test]
async fn millions_of_empty_series_are_refused_fast() {
    let s = start(IngestLimits::default(), HttpLimits::default()).await;
    // 3,000,000 empty TimeSeries: field 1, length 0.
    let raw: Vec<u8> = [0x0a, 0x00].repeat(3_000_000);
    let b = compress(&raw);
    let t = Instant::now();
    let (code, msg) = post(s.addr, b.clone()).await;
    let took = t.elapsed();
    println!("{} compressed bytes, {} decoded, refused in {took:?}", b.len(), raw.len());
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("more than 1000000 series") && msg.contains("--remote-write-max-series-per-request"), "{msg}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn a_body_over_the_old_2_mib_limit_is_stored() {
    let s = start(IngestLimits::default(), HttpLimits::default()).await;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let ts: Vec<_> = (0..40_000)
        .map(|i| {
            let mut v = String::new();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push_str(&format!("{x:016x}"));
            }
            series(&[("__name__", "big"), ("id", &v)], &[(i, 1.0)])
        })
        .collect();
    let b = body(ts);
    assert!(b.len() > 2 << 20, "body of {} bytes is not over 2 MiB", b.len());
    let (code, msg) = post(s.addr, b).await;
    assert_eq!(code, 204, "{msg}");
    assert_eq!(stored(&s.tsdb, "big"), 40_000);
}

#[tokio::test]
async fn duplicate_and_empty_label_names_are_refused_and_the_rest_stored() {
    let s = start(IngestLimits::default(), HttpLimits::default()).await;
    let b = body(vec![
        series(&[("__name__", "fine")], &[(1, 1.0), (2, 2.0)]),
        series(&[("__name__", "twice"), ("a", "1"), ("a", "2")], &[(1, 1.0)]),
        series(&[("__name__", "nameless"), ("", "v")], &[(1, 1.0)]),
    ]);
    let (code, msg) = post(s.addr, b).await;
    assert_eq!(code, 400, "{msg}");
    assert!(msg.starts_with("2 sample(s) rejected, 2 accepted"), "{msg}");
    assert!(
        msg.contains(r#"invalid labels for series, labels {__name__="twice", a="1", a="2"}, duplicated label a"#),
        "{msg}"
    );
    assert!(msg.contains(r#"invalid metric name or labels, got {__name__="nameless", ="v"}"#), "{msg}");
    assert_eq!(stored(&s.tsdb, "fine"), 2);
    assert_eq!(stored(&s.tsdb, "twice"), 0);
}

/// Appends `n` native histograms (field 4, contents not read) to an
/// encoded `TimeSeries`.
fn with_histograms(ts: &TimeSeries, n: usize) -> Vec<u8> {
    let mut out = ts.encode_to_vec();
    for _ in 0..n {
        // Histogram{count_int: 1 (field 1), timestamp: 5 (field 15)}
        let h = [0x08, 0x01, 0x78, 0x05];
        out.extend([0x22, h.len() as u8]);
        out.extend(h);
    }
    out
}

#[tokio::test]
async fn native_histograms_are_named_and_the_floats_beside_them_stored() {
    let s = start(IngestLimits::default(), HttpLimits::default()).await;
    let mixed = with_histograms(&series(&[("__name__", "mixed"), ("job", "x")], &[(1, 1.0), (2, 2.0)]), 3);
    let mut raw = WriteRequest { timeseries: vec![series(&[("__name__", "plain")], &[(1, 1.0)])], metadata: vec![] }
        .encode_to_vec();
    raw.push(0x0a);
    let mut len = declares(mixed.len() as u64);
    raw.append(&mut len);
    raw.extend(&mixed);
    let (code, msg) = post(s.addr, compress(&raw)).await;
    assert_eq!(code, 400, "{msg}");
    assert!(
        msg.contains(
            r#"native histograms are not supported yet: 3 histogram sample(s) dropped for series {__name__="mixed", job="x"}"#
        ),
        "{msg}"
    );
    assert!(msg.starts_with("3 sample(s) rejected, 3 accepted"), "{msg}");
    assert_eq!(stored(&s.tsdb, "mixed"), 2);
    assert_eq!(stored(&s.tsdb, "plain"), 1);
}

#[tokio::test]
async fn a_spent_decode_budget_answers_429_with_retry_after() {
    let limits = IngestLimits { decode_budget_bytes: 64 << 10, ..IngestLimits::default() };
    let s = start(limits, HttpLimits::default()).await;
    // A request that declares the whole budget and sends none of it holds it.
    let mut hog = TcpStream::connect(s.addr).await.unwrap();
    hog.write_all(b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/write", s.addr))
        .body(body(vec![series(&[("__name__", "later")], &[(1, 1.0)])]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(r.text().await.unwrap().contains("--remote-write-decode-budget-bytes"));
    drop(hog);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, msg) = post(s.addr, body(vec![series(&[("__name__", "later")], &[(1, 1.0)])])).await;
    assert_eq!(code, 204, "the budget is given back: {msg}");
}

#[tokio::test]
async fn stalled_headers_and_bodies_are_cut_off() {
    let http = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let s = start(IngestLimits::default(), http).await;
    let mut half_header = TcpStream::connect(s.addr).await.unwrap();
    half_header.write_all(b"GET /-/healthy HTTP/1.1\r\nhost: x\r\nx-stall").await.unwrap();
    let mut half_body = TcpStream::connect(s.addr).await.unwrap();
    half_body.write_all(b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc").await.unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), half_header.read_to_end(&mut buf)).await;
    assert!(n.is_ok(), "a half-header connection is closed after the header timeout");
    println!("half header closed after {:?}", t.elapsed());
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(3), half_body.read_to_string(&mut answer))
        .await
        .expect("a half-sent body is answered after the body timeout")
        .ok();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body not received within"), "{answer}");
}

/// Raises this test process's open-files limit for the connections below.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(hard >= 5000, "the open-files hard limit ({hard}) is too low for this test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_stalled_connections_do_not_stop_other_clients() {
    raise_nofile();
    let s = start(IngestLimits::default(), HttpLimits::default()).await;
    let t = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..2000 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\ncontent-").await.unwrap();
        stalled.push(c);
    }
    println!("2000 half-header connections open in {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::new();
    let t = Instant::now();
    let healthy = client.get(format!("http://{}/-/healthy", s.addr)).send().await.unwrap();
    let healthy_took = t.elapsed();
    assert_eq!(healthy.status().as_u16(), 200);
    let t = Instant::now();
    let (code, msg) = post(s.addr, body(vec![series(&[("__name__", "during")], &[(1, 1.0)])])).await;
    let write_took = t.elapsed();
    println!("during the attack: /-/healthy in {healthy_took:?}, remote_write in {write_took:?}");
    assert_eq!(code, 204, "{msg}");
    assert!(healthy_took < Duration::from_secs(1) && write_took < Duration::from_secs(1));
    assert_eq!(stored(&s.tsdb, "during"), 1);
    drop(stalled);
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let http = HttpLimits { max_connections: 2, header_read_timeout: Duration::from_millis(500), ..Default::default() };
    let s = start(IngestLimits::default(), http).await;
    let mut a = TcpStream::connect(s.addr).await.unwrap();
    a.write_all(b"GET /-/heal").await.unwrap();
    let mut b = TcpStream::connect(s.addr).await.unwrap();
    b.write_all(b"GET /-/heal").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let r = reqwest::Client::new().get(format!("http://{}/-/healthy", s.addr)).send().await.unwrap();
    let took = t.elapsed();
    println!("third connection answered after {took:?}");
    assert_eq!(r.status().as_u16(), 200);
    assert!(took >= Duration::from_millis(250), "served before a slot was free: {took:?}");
    drop((a, b));
}
