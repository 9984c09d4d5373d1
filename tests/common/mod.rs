//! Helpers shared by the integration tests: start the real `pharos` binary
//! (`pharos up`: [`start_up`]; `pharos cluster up`: [`cluster`]), talk to it
//! over HTTP, signal it ([`signal`]), stand in for an exporter
//! ([`serve_metrics`]), and stop it whatever happens. Peers (Prometheus,
//! node-exporter, ...) are installed by `scripts/peers.sh` before the tests
//! run; [`require`] fails naming it when one is missing.

#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;
#[path = "../../crates/scrape/tests/common/exporter.rs"]
pub mod exporter;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use pharos_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

pub fn pharos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pharos"))
}

/// A free loopback address, below the kernel's ephemeral port range (as
/// `cluster up` picks its children's ports): a port-0 one could be taken by
/// an outgoing connection's local port before the process under test binds it.
pub fn free_addr() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(32768);
    for i in 0..64u64 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let h = (seed ^ (u64::from(std::process::id()) << 20) ^ (n << 40) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if low <= 10_000 {
            break;
        }
        let port = 10_000 + ((h >> 17) % (low - 10_000)) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap().to_string();
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd.stdout(f.try_clone().unwrap()).stderr(f).stdin(Stdio::null()).spawn().unwrap();
        Proc { child, log: log.to_path_buf() }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "process did not stop on SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: Signal) {
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(target, sig).unwrap_or_else(|e| panic!("cannot send {sig:?} to {pid}: {e}"));
}

/// SIGKILL: no flush, no clean shutdown.
pub fn kill9(pid: u32) {
    signal(pid, Signal::SIGKILL);
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Polls `url` until it answers 2xx or `secs` pass.
pub fn wait_ready(url: &str, secs: u64, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(r) = client().get(url).send()
            && r.status().is_success()
        {
            return;
        }
        if let Some(s) = proc.child.try_wait().unwrap() {
            panic!("process exited with {s} before becoming ready:\n{}", proc.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} not ready after {secs}s:\n{}", proc.log());
}

pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = client().get(url).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// An instant query; returns the HTTP status and the JSON body.
pub fn query(base: &str, q: &str, time: Option<f64>) -> (u16, serde_json::Value) {
    let mut params = vec![("query", q.to_string())];
    if let Some(t) = time {
        params.push(("time", t.to_string()));
    }
    let r = client().get(format!("{base}/api/v1/query")).query(&params).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

pub fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    let mut ls = vec![Label { name: "__name__".into(), value: name.into() }];
    ls.extend(labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }));
    ls.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries { labels: ls, samples: samples.iter().map(|&(t, v)| Sample { value: v, timestamp: t }).collect() }
}

pub fn encode_write(ts: Vec<TimeSeries>) -> Vec<u8> {
    let req = WriteRequest { timeseries: ts, metadata: vec![] };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

/// POSTs a remote_write body; returns status and response text.
pub fn remote_write(base: &str, body: Vec<u8>, tenant: Option<&str>) -> (u16, String) {
    let mut rb = client()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        rb = rb.header("X-Scope-OrgID", t);
    }
    let r = rb.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The result array of a successful query answer.
pub fn result(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"].as_array().unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Waits until the `pharos cluster up` supervisor `sup` has written
/// `DIR/cluster.json` (every process ready) and returns it; fails with the
/// supervisor's log if it exits or takes longer than `secs`.
pub fn wait_cluster_json(dir: &Path, sup: &mut Proc, secs: u64) -> serde_json::Value {
    let path = dir.join("cluster.json");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !path.exists() {
        assert!(Instant::now() < deadline, "cluster.json never written:\n{}", sup.log());
        if let Some(s) = sup.child.try_wait().unwrap() {
            panic!("supervisor exited with {s}:\n{}", sup.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Serves `body` as a Prometheus text exposition on a fresh loopback port,
/// from a thread that lives as long as the test process; returns the address.
pub fn serve_metrics(body: String) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => head.extend_from_slice(&buf[..k]),
                }
            }
            let _ = c.write_all(exporter::response(exporter::TEXT_FORMAT, &body).as_bytes());
        }
    });
    addr
}

/// Fails unless `binary` (of Debian's `package`) is on the PATH: the test
/// command installs the peers before the tests (`scripts/peers.sh`).
pub fn require(package: &str, binary: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()));
    assert!(found, "{binary} (Debian's {package}) is missing: run scripts/peers.sh, as scripts/test.sh does");
}

/// `pharos up --listen LISTEN EXTRA` with its data in `dir/data`, once ready.
pub fn start_up(dir: &Path, listen: &str, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = pharos();
    cmd.args(["up", "--data-dir"]).arg(dir.join("data")).args(["--listen", listen]).args(extra);
    let mut p = Proc::start(cmd, &dir.join(format!("up-{}.log", listen.replace(':', "_"))));
    wait_ready(&format!("http://{listen}/-/ready"), 60, &mut p);
    p
}

/// `pharos up --config CONFIG` on a free loopback address with its data in
/// `dir`, once ready; returns the process and its base URL.
pub fn up_with_config(dir: &Path, config: &Path) -> (Proc, String) {
    let addr = free_addr();
    let p = start_up(dir, &addr, &["--config", config.to_str().unwrap()]);
    (p, format!("http://{addr}"))
}
