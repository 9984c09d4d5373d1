//! Pharos against a real Prometheus 2.42 on the shared conformance data set:
//! the same data over remote_write, the same queries (plain selectors and
//! the shared `queries.promql`), the same answers. Needs `../shared/conformance` beside the repository and
//! Debian's `prometheus` package (`scripts/peers.sh`).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn conformance_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    d.join("promql_diff.py").exists().then(|| d.canonicalize().unwrap())
}

struct Reference(u32);

impl Drop for Reference {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGTERM);
    }
}

fn diff(conf: &Path, end: i64, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(conf.join("promql_diff.py"))
        .args(["--end", &end.to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn check_against_reference(conf: &Path, reference: &str, sut: &str, end: i64) {
    let (ok, text) = diff(conf, end, &["remote-write", &format!("{sut}/api/v1/write")]);
    assert!(ok, "remote-write of the data set failed:\n{text}");
    // Plain selectors first (the storage path), then the shared hand-written
    // PromQL list (the engine over the storage path).
    let selectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/selectors.promql");
    for queries in [selectors, conf.join("queries.promql")] {
        let (ok, text) =
            diff(conf, end, &["compare", "--ref", reference, "--sut", sut, "--queries", queries.to_str().unwrap()]);
        assert!(ok, "answers to {} differ from Prometheus:\n{text}", queries.display());
    }
}

#[test]
fn selectors_match_prometheus_in_both_modes() {
    let Some(conf) = conformance_dir() else {
        eprintln!("SKIPPED: ../shared/conformance not found beside the repository");
        return;
    };
    require("prometheus", "promtool");
    let dir = tempfile::tempdir().unwrap();
    let end = (now_ms() / 1000 / 3600 - 1) * 3600;
    let ref_addr = free_addr();
    let ref_port = ref_addr.rsplit(':').next().unwrap();
    let out = Command::new("bash")
        .arg(conf.join("reference.sh"))
        .arg(dir.path().join("ref"))
        .arg(ref_port)
        .arg(end.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "reference.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let _reference = Reference(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap());
    let reference = format!("http://{ref_addr}");

    // The embedded mode.
    let addr = free_addr();
    let up = start_up(&dir.path().join("up"), &addr, &[]);
    check_against_reference(&conf, &reference, &format!("http://{addr}"), end);
    drop(up);

    // A two-shard cluster.
    let addr = free_addr();
    let cdir = dir.path().join("cluster");
    let args = ["--shards", "2", "--replication-factor", "1", "--listen", &addr].map(String::from);
    let (mut sup, _) = cluster::cluster_up(&cdir, &args);
    check_against_reference(&conf, &reference, &format!("http://{addr}"), end);
    sup.terminate();
}
