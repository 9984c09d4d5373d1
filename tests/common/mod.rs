//! Helpers shared by the integration tests: start the real `pharos` binary,
//! talk to it over HTTP, and stop it whatever happens.

#![allow(dead_code, clippy::unwrap_used)]

pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
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
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Installs Debian package `package` unless `binary` is on the PATH. Waits
/// for a dpkg lock another installer holds instead of failing on it.
pub fn ensure_package(package: &str, binary: &str) {
    if Command::new("sh").arg("-c").arg(format!("command -v {binary}")).output().is_ok_and(|o| o.status.success()) {
        return;
    }
    let install = format!(
        "export DEBIAN_FRONTEND=noninteractive; a='apt-get -o DPkg::Lock::Timeout=600 -y -q'; \
         ($a install {package} || ($a update && $a install {package})) >/dev/null 2>&1"
    );
    let ok = Command::new("sh").arg("-c").arg(install).status().unwrap().success();
    assert!(ok, "could not install Debian's {package} package");
}

/// `pharos up --config CONFIG` on a free loopback address with its data in
/// `dir`, once ready; returns the process and its base URL.
pub fn up_with_config(dir: &Path, config: &Path) -> (Proc, String) {
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut cmd = pharos();
    cmd.args(["up", "--data-dir"]).arg(dir.join("data")).args(["--listen", &addr, "--config"]).arg(config);
    let mut p = Proc::start(cmd, &dir.join("up.log"));
    wait_ready(&format!("{base}/-/ready"), 60, &mut p);
    (p, base)
}
