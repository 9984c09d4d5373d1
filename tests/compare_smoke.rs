//! The comparison's smoke mode in CI: `benches/compare --smoke` drives
//! `pharos up`, Prometheus 2.42 and VictoriaMetrics 1.79 (Debian packages,
//! installed by the script when missing) with the same small `pharos bench`
//! load, and fails only on errors or lost samples, never on speed. It uses
//! the debug binary this test run built, so its figures mean nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn compare_smoke_loses_nothing_on_any_system() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(root.join("benches/compare"))
        .args(["--smoke", "--only", "pharos-up,prometheus,victoriametrics", "--out"])
        .arg(out.path())
        .env("PHAROS_BIN", env!("CARGO_BIN_EXE_pharos"))
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "benches/compare --smoke failed:\n{log}");
    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    // Every system wrote, verified and scraped: a row of each figure per system.
    for system in ["pharos", "prometheus", "victoriametrics"] {
        let missing: Vec<&str> =
            csv.lines().filter(|l| l.to_lowercase().contains(system) && l.contains("missing samples")).collect();
        assert!(!missing.is_empty(), "no missing-samples row for {system}:\n{csv}");
        for l in missing {
            assert!(l.trim_end().ends_with(",0"), "{system} lost samples: {l}\n{log}");
        }
    }
    assert!(out.path().join("results.md").exists());
}
