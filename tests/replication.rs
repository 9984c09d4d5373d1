//! Replicated shards under faults: `pharos cluster up --replication-factor 3`
//! with a writer that records every acknowledged sample, and at the end
//! every one of them is queried back.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, grpc_of};
use common::*;

/// Writes one sample per request (several series, spread over shards)
/// until told to stop; records what was acknowledged and when.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(i64, Instant)>>>,
    failed: Arc<Mutex<u64>>,
    handle: Option<std::thread::JoinHandle<()>>,
    t0: i64,
}

const SERIES: i64 = 8;

impl Writer {
    fn start(base: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let t0 = now_ms() - 600_000;
        let (s2, a2, f2, base) = (stop.clone(), acked.clone(), failed.clone(), base.to_string());
        let handle = std::thread::spawn(move || {
            let mut i = 0i64;
            while !s2.load(Ordering::Relaxed) {
                let t = t0 + i;
                let ts = series("chk", &[("s", &(i % SERIES).to_string())], &[(t, i as f64)]);
                let ok = client()
                    .post(format!("{base}/api/v1/write"))
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(encode_write(vec![ts]))
                    .send()
                    .map(|r| r.status().as_u16() == 204)
                    .unwrap_or(false);
                if ok {
                    a2.lock().unwrap().push((i, Instant::now()));
                } else {
                    *f2.lock().unwrap() += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                i += 1;
            }
        });
        Writer { stop, acked, failed, handle: Some(handle), t0 }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_for(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = self.acked();
        while self.acked() < start + n {
            assert!(
                Instant::now() < deadline,
                "writes did not resume: {} acked, {} failed",
                self.acked(),
                self.failed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn failed(&self) -> u64 {
        *self.failed.lock().unwrap()
    }

    /// Stops and returns the acknowledged sample numbers and the longest
    /// time without an acknowledgement after `since`.
    fn finish(mut self, since: Instant) -> (BTreeSet<i64>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        let acked = self.acked.lock().unwrap();
        let mut gap = Duration::ZERO;
        let mut prev = since;
        for (_, at) in acked.iter().filter(|(_, at)| *at >= since) {
            gap = gap.max(at.duration_since(prev));
            prev = *at;
        }
        (acked.iter().map(|(i, _)| *i).collect(), gap)
    }
}

/// Every acknowledged sample number must come back from a query.
fn check_all_back(base: &str, t0: i64, acked: &BTreeSet<i64>) {
    let last = *acked.iter().next_back().unwrap();
    let at = (t0 + last) as f64 / 1000.0;
    let window_ms = last + 1000;
    let (status, v) = query(base, &format!("chk[{window_ms}ms]"), Some(at));
    assert_eq!(status, 200, "{v}");
    let mut found = BTreeSet::new();
    for s in result(&v) {
        for p in s["values"].as_array().unwrap() {
            found.insert(p[1].as_str().unwrap().parse::<f64>().unwrap() as i64);
        }
    }
    let lost: Vec<&i64> = acked.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged samples lost, first {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
}

/// Queries `count(last_over_time(chk[20m]))` (every series the writer
/// started) in a loop until finished. A query may be retried as a client
/// would: at most twice more after a 5xx answer or a failed connection, 200 ms
/// apart; a query that still fails, or answers a wrong count, is an error.
struct QueryLoop {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, u64, Vec<String>)>>,
}

impl QueryLoop {
    fn start(base: &str) -> QueryLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, base) = (stop.clone(), base.to_string());
        let handle = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let (mut queries, mut retries, mut errors) = (0u64, 0u64, Vec::new());
            while !s2.load(Ordering::Relaxed) {
                queries += 1;
                let mut last = String::new();
                let mut answered = false;
                for attempt in 0..3 {
                    if attempt > 0 {
                        retries += 1;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    let r = http
                        .get(format!("{base}/api/v1/query"))
                        .query(&[("query", "count(last_over_time(chk[20m]))")])
                        .send();
                    match r {
                        Ok(r) if r.status().is_server_error() => {
                            last = format!("{}: {}", r.status(), r.text().unwrap_or_default())
                        }
                        Ok(r) => {
                            let status = r.status();
                            let v: serde_json::Value = r.json().unwrap_or_default();
                            let count = v["data"]["result"][0]["value"][1].as_str().and_then(|c| c.parse::<f64>().ok());
                            if !status.is_success() || count != Some(SERIES as f64) {
                                errors.push(format!("{status}: {v}"));
                            }
                            answered = true;
                            break;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                if !answered {
                    errors.push(format!("no answer after 3 attempts: {last}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (queries, retries, errors)
        });
        QueryLoop { stop, handle: Some(handle) }
    }

    /// Stops; fails unless every query was answered right. Returns how many
    /// queries ran and how many retries they took.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (queries, retries, errors) = self.handle.take().unwrap().join().unwrap();
        assert!(
            errors.is_empty(),
            "{} of {queries} queries failed, first {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
        (queries, retries)
    }
}

#[test]
fn leader_killed_during_writes_loses_no_acknowledged_sample() {
    let c = Cluster::start(1);
    let w = Writer::start(&c.base);
    w.wait_for(50, 30);
    let leader = c.leader(0, None);
    // Hold the supervisor, so the killed leader stays down until a
    // follower is elected (restarted at once, it would take its lead back).
    let sup = c.sup.child.id();
    signal(sup, Signal::SIGSTOP);
    let killed_at = Instant::now();
    kill9(c.pid(&leader));
    let new_leader = c.leader(0, Some(&leader));
    let elected = killed_at.elapsed();
    w.wait_for(50, 60);
    signal(sup, Signal::SIGCONT);
    let t0 = w.t0;
    let (acked, gap) = w.finish(killed_at);
    eprintln!(
        "leader {leader} killed (-9); {new_leader} seen as leader after {} ms; longest gap between acknowledged writes after the kill: {} ms; {} samples acknowledged",
        elected.as_millis(),
        gap.as_millis(),
        acked.len()
    );
    check_all_back(&c.base, t0, &acked);
    // The gateway wrote over a stream to the old leader, then over another
    // to the new one (the killed leader's stream broke).
    let m = client().get(format!("{}/metrics", c.base)).send().unwrap().text().unwrap();
    let streams = metric(&m, "pharos_cluster_write_streams_opened_total");
    assert!(streams >= Some(2.0), "write streams opened: {streams:?}");
    eprintln!("the gateway opened {} write streams", streams.unwrap_or(0.0));
    // The killed replica is back (the supervisor restarts it) and caught up.
    c.converged();
}

/// A leader that stops answering (SIGSTOP: cut off from its followers and
/// its clients alike) is replaced; when it wakes up it follows the new
/// leader, and its unacknowledged writes never surface.
#[test]
fn frozen_leader_is_replaced_and_rejoins_as_follower() {
    let c = Cluster::start(1);
    let w = Writer::start(&c.base);
    w.wait_for(50, 30);
    let term = |c: &Cluster| c.status()["data"]["shards"][0]["term"].as_u64().unwrap_or(0);
    let (old, old_term) = (c.leader(0, None), term(&c));
    let pid = c.pid(&old);
    let frozen_at = Instant::now();
    signal(pid, Signal::SIGSTOP);
    let new = c.leader(0, Some(&old));
    w.wait_for(50, 60);
    let elected = frozen_at.elapsed();
    assert!(term(&c) > old_term, "a new leader in the same term");
    signal(pid, Signal::SIGCONT);
    c.converged();
    let st = c.status();
    let reps = st["data"]["shards"][0]["replicas"].as_array().unwrap();
    let leaders: Vec<&serde_json::Value> = reps.iter().filter(|r| r["state"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "two leaders after the old one woke up: {st}");
    w.wait_for(20, 30);
    let t0 = w.t0;
    let (acked, gap) = w.finish(frozen_at);
    eprintln!(
        "leader {old} frozen; {new} elected and writes resumed within {} ms; longest write gap {} ms; {} samples acknowledged",
        elected.as_millis(),
        gap.as_millis(),
        acked.len()
    );
    check_all_back(&c.base, t0, &acked);
}

/// A figure from a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Replica `id`'s entry on the status page.
fn replica_status(c: &Cluster, id: &str) -> serde_json::Value {
    let st = c.status();
    st["data"]["shards"][0]["replicas"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone()
}

/// Small snapshot settings, so that a short test purges the log (the
/// writer and the self-scrape make about 100 entries a second here): a
/// snapshot every 300 entries, 300 entries kept behind it, so a follower
/// restarted for a second or two still catches up from the log.
const SNAPSHOT_OFTEN: &[&str] = &["--raft-snapshot-every", "300", "--raft-log-keep", "300"];

#[test]
fn rolling_restart_and_wiped_replica_keep_every_sample() {
    let c = Cluster::start_with(1, tempfile::tempdir().unwrap(), SNAPSHOT_OFTEN);
    let w = Writer::start(&c.base);
    w.wait_for(30, 30);
    let ingesters: Vec<String> = c
        .processes()
        .iter()
        .filter(|p| p["role"] == "ingester")
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    // Rolling restart: one replica at a time, each back and caught up
    // before the next; queries keep answering throughout, with every series.
    let queries = QueryLoop::start(&c.base);
    for id in &ingesters {
        let pid = c.pid(id);
        signal(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.pid(id) == pid {
            assert!(Instant::now() < deadline, "{id} was not restarted");
            std::thread::sleep(Duration::from_millis(100));
        }
        c.converged();
        w.wait_for(10, 30);
    }
    let (n, retries) = queries.finish();
    eprintln!("rolling restart of {} ingesters: {n} queries all answered, {retries} retries", ingesters.len());
    // A follower loses its disk: it comes back empty and catches up from
    // the leader, which purged the start of its log: through a snapshot.
    let leader = c.leader(0, None);
    let victim = ingesters.iter().rfind(|id| **id != leader).unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while replica_status(&c, &leader)["purged_index"].as_u64().unwrap_or(0) < 20 {
        assert!(Instant::now() < deadline, "the leader never purged its log: {}", c.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Hold the supervisor while the disk is wiped, so the restart sees it empty.
    let sup = c.sup.child.id();
    signal(sup, Signal::SIGSTOP);
    kill9(c.pid(&victim));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir_all(c.data_dir(&victim)).unwrap();
    let wiped_at = Instant::now();
    signal(sup, Signal::SIGCONT);
    // It installs a snapshot and holds every series again. Its HTTP side
    // may still be starting (the supervisor restarts it): poll.
    let url = format!("{}/metrics", replica_status(&c, &victim)["http"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut series, mut installed, mut m) = (0.0, 0.0, String::new());
    while Instant::now() < deadline {
        if let Some(text) = client().get(&url).send().ok().and_then(|r| r.text().ok()) {
            m = text;
            series = metric(&m, "pharos_tsdb_active_series").unwrap_or(0.0);
            installed = metric(&m, "pharos_raft_snapshots_installed_total").unwrap_or(0.0);
            if series >= SERIES as f64 && installed >= 1.0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(installed >= 1.0, "the wiped replica installed no snapshot:\n{m}\n{}", c.logs());
    assert!(series >= SERIES as f64, "the wiped replica holds {series} series: {}", c.status());
    eprintln!(
        "wiped replica {victim}: every series back through a snapshot ({} ms install) {} ms after the supervisor was let go",
        metric(&m, "pharos_raft_last_snapshot_install_seconds").unwrap_or(0.0) * 1000.0,
        wiped_at.elapsed().as_millis()
    );
    w.wait_for(30, 30);
    let t0 = w.t0;
    let (acked, _) = w.finish(Instant::now());
    c.converged();
    check_all_back(&c.base, t0, &acked);
}

/// The whole cluster stopped under a writer and started again on the same
/// directory: every acknowledged sample is back and writes resume.
#[test]
fn full_cluster_restart_keeps_every_acknowledged_sample() {
    let mut c = Cluster::start(2);
    let w = Writer::start(&c.base);
    w.wait_for(100, 30);
    let stopped_at = Instant::now();
    c.stop();
    let before = w.acked();
    c.restart();
    let up = stopped_at.elapsed();
    w.wait_for(100, 60);
    let t0 = w.t0;
    let (acked, gap) = w.finish(stopped_at);
    assert!(acked.len() >= before + 100, "{} acknowledged", acked.len());
    c.converged();
    check_all_back(&c.base, t0, &acked);
    eprintln!(
        "full restart of 2 shards x 3 replicas: every shard led again {} ms after the stop began, writes acknowledged again after {} ms; {before} samples acknowledged before the stop, {} in all",
        up.as_millis(),
        gap.as_millis(),
        acked.len()
    );

    // The restart moved every replica to new ports, but the raft membership
    // holds those of the first start: `pharos admin` through a follower
    // still reaches the leader (at its address now) to add and remove one.
    let leader = c.leader(0, None);
    let topo = c.dir.path().join("topology.json");
    let follower = ["ingester-0", "ingester-1", "ingester-2"].into_iter().find(|id| *id != leader).unwrap();
    let via = grpc_of(&topo, follower).unwrap();
    let (_extra, grpc, _) = c.extra_ingester("ingester-6", &[]);
    let st = admin(&["add-replica", "--via", &via, "--id", "ingester-6", "--grpc", &grpc]);
    assert!(voters(&st).contains(&6), "{st}");
    let st = admin(&["remove-replica", "--via", &via, "--id", "ingester-6"]);
    assert_eq!(voters(&st), vec![0, 1, 2], "{st}");
}

/// Which ingesters said they led in which term, from their `/metrics`
/// (`pharos_raft_is_leader`, `pharos_raft_term`), polled until finished.
struct LeaderLog {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<std::collections::BTreeMap<u64, BTreeSet<String>>>>,
}

impl LeaderLog {
    fn start(c: &Cluster) -> LeaderLog {
        let ingesters: Vec<(String, String)> = c
            .processes()
            .iter()
            .filter(|p| p["role"] == "ingester")
            .map(|p| (p["id"].as_str().unwrap().to_string(), format!("{}/metrics", p["http"].as_str().unwrap())))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
            let mut seen: std::collections::BTreeMap<u64, BTreeSet<String>> = Default::default();
            while !s2.load(Ordering::Relaxed) {
                for (id, url) in &ingesters {
                    let Some(m) = http.get(url).send().ok().and_then(|r| r.text().ok()) else { continue };
                    if let (Some(1.0), Some(term)) =
                        (metric(&m, "pharos_raft_is_leader"), metric(&m, "pharos_raft_term"))
                    {
                        seen.entry(term as u64).or_default().insert(id.clone());
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        LeaderLog { stop, handle: Some(handle) }
    }

    fn finish(mut self) -> std::collections::BTreeMap<u64, BTreeSet<String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// The replicas reach each other's raft service only through a proxy
/// (`cluster up --raft-routes`); the proxy cuts the leader off from its
/// followers, while clients still reach every replica. The followers elect
/// a new leader in a higher term and take writes; the old one acknowledges
/// nothing; healed, the cluster converges by itself; no term ever has two
/// leaders; every acknowledged sample is there, the unacknowledged never.
#[test]
fn partitioned_leader_is_replaced_and_the_partition_heals() {
    let (c, proxy) = Cluster::start_behind_proxy(&[]);
    let leaders = LeaderLog::start(&c);
    let w = Writer::start(&c.base);
    w.wait_for(50, 30);
    let term = |c: &Cluster| c.status()["data"]["shards"][0]["term"].as_u64().unwrap_or(0);
    let (old, old_term) = (c.leader(0, None), term(&c));
    let cut_at = Instant::now();
    proxy.isolate(&old);
    let new = c.leader(0, Some(&old));
    let elected = cut_at.elapsed();
    w.wait_for(50, 60);
    let resumed = cut_at.elapsed();
    assert!(term(&c) > old_term, "the new leader {new} is not in a higher term than {old_term}: {}", c.status());

    // The old leader, still reachable by clients, acknowledges nothing: a
    // write sent to it alone fails, and its commit index stands still.
    let old_commit = || replica_status(&c, &old)["commit_index"].as_u64();
    let commit_before = old_commit();
    let old_grpc = grpc_of(&c.dir.path().join("topology.json"), &old).unwrap();
    let probe = proxy.block_on(async {
        use pharos_cluster::Shard;
        let n = old.strip_prefix("ingester-").unwrap().parse().unwrap();
        let shard = pharos_cluster::RemoteShard::replicated(0, &[(Some(n), old_grpc)])
            .unwrap()
            .with_deadline(Duration::from_secs(4));
        let labels = pharos_model::Labels::from_pairs(&[("__name__", "probe")]);
        let batch =
            vec![pharos_storage::SeriesSamples { labels, samples: vec![pharos_model::Sample::new(now_ms(), 1.0)] }];
        shard.append(pharos_model::DEFAULT_TENANT, batch).await
    });
    assert!(probe.is_err(), "the cut-off leader {old} acknowledged a write: {probe:?}");
    std::thread::sleep(Duration::from_secs(1)); // the status page polls every second
    assert_eq!(old_commit(), commit_before, "the cut-off leader {old} committed entries");

    // Healed, the old leader follows the new one; nothing else is needed.
    let healed_at = Instant::now();
    proxy.heal(&old);
    c.converged();
    let converged = healed_at.elapsed();
    let st = replica_status(&c, &old);
    assert_eq!(st["state"], "follower", "{}", c.status());
    w.wait_for(20, 30);
    let t0 = w.t0;
    let (acked, gap) = w.finish(cut_at);
    check_all_back(&c.base, t0, &acked);
    let (status, v) = query(&c.base, "probe", None);
    assert_eq!(status, 200, "{v}");
    assert!(result(&v).is_empty(), "a write the cut-off leader never acknowledged surfaced: {v}");
    let seen = leaders.finish();
    for (term, ids) in &seen {
        assert_eq!(ids.len(), 1, "two leaders in term {term}: {ids:?}");
    }
    assert!(seen.values().any(|ids| ids.contains(&new)), "{seen:?}");
    eprintln!(
        "leader {old} (term {old_term}) cut off: {new} elected after {} ms, writes resumed after {} ms, \
         longest gap between acknowledged writes {} ms; converged {} ms after healing; leaders by term {seen:?}; \
         {} samples acknowledged",
        elected.as_millis(),
        resumed.as_millis(),
        gap.as_millis(),
        converged.as_millis(),
        acked.len()
    );
}

/// `pharos admin ...` with `args`; its JSON answer.
fn admin(args: &[&str]) -> serde_json::Value {
    let out = pharos().arg("admin").args(args).output().unwrap();
    assert!(out.status.success(), "pharos admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn voters(st: &serde_json::Value) -> Vec<u64> {
    st["voters"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

/// A dead replica (frozen for good) is replaced by hand: a new ingester
/// listed with the shard in its own copy of the topology, `pharos admin
/// add-replica` (a learner that catches up, through a snapshot since the
/// log was purged, then a voter), then `remove-replica` of the dead one.
/// Writes go on throughout and no acknowledged sample is lost.
#[test]
fn dead_replica_is_replaced_with_admin_commands() {
    let c = Cluster::start_with(1, tempfile::tempdir().unwrap(), SNAPSHOT_OFTEN);
    let w = Writer::start(&c.base);
    w.wait_for(30, 30);
    let leader = c.leader(0, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while replica_status(&c, &leader)["purged_index"].as_u64().unwrap_or(0) < 20 {
        assert!(Instant::now() < deadline, "the leader never purged its log: {}", c.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    let dead = ["ingester-0", "ingester-1", "ingester-2"].into_iter().rfind(|id| *id != leader).unwrap().to_string();
    signal(c.pid(&dead), Signal::SIGSTOP);

    let (new, grpc, http) = c.extra_ingester("ingester-3", SNAPSHOT_OFTEN);

    let via = grpc_of(&c.dir.path().join("topology.json"), &leader).unwrap();
    let started = Instant::now();
    let st = admin(&["add-replica", "--via", &via, "--id", "ingester-3", "--grpc", &grpc]);
    let added = started.elapsed();
    assert!(voters(&st).contains(&3), "{st}");
    let st = admin(&["remove-replica", "--via", &via, "--id", &dead]);
    let dead_n: u64 = dead.strip_prefix("ingester-").unwrap().parse().unwrap();
    assert_eq!(voters(&st).len(), 3, "{st}");
    assert!(!voters(&st).contains(&dead_n), "{st}");

    w.wait_for(30, 30);
    let t0 = w.t0;
    let (acked, _) = w.finish(Instant::now());
    check_all_back(&c.base, t0, &acked);
    // The new replica caught up through a snapshot and applies the log.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mine = admin(&["replica-status", "--grpc", &grpc]);
        let theirs = admin(&["replica-status", "--grpc", &via]);
        if mine["applied_index"].as_u64() >= theirs["commit_index"].as_u64() && mine["state"] == "follower" {
            assert!(mine["snapshots_installed"].as_u64() >= Some(1), "{mine}");
            break;
        }
        assert!(Instant::now() < deadline, "ingester-3 did not catch up: {mine}\n{theirs}\n{}", new.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = client().get(format!("http://{http}/metrics")).send().unwrap().text().unwrap();
    assert!(metric(&m, "pharos_tsdb_active_series") >= Some(SERIES as f64), "{m}");
    eprintln!(
        "{dead} replaced by ingester-3: add-replica (learner catch-up through a snapshot, then voter) took {} ms; {} samples acknowledged",
        added.as_millis(),
        acked.len()
    );
    // Gone for good, before the supervisor's teardown.
    signal(c.pid(&dead), Signal::SIGKILL);
}

/// Writes sample `k` of series `rw` (at `t0 + k` s) through the gateway,
/// then reads the series back at that time: the answer must be `k`, the
/// sample just acknowledged, whichever replica served the read.
fn write_then_read(base: &str, t0: i64, k: i64) {
    let t = t0 + k * 1000;
    let (status, body) = remote_write(base, encode_write(vec![series("rw", &[], &[(t, k as f64)])]), None);
    assert_eq!(status, 204, "write {k}: {body}");
    let (status, v) = query(base, "rw", Some(t as f64 / 1000.0));
    assert_eq!(status, 200, "{v}");
    let got = result(&v).first().and_then(|s| s["value"][1].as_str()).and_then(|x| x.parse::<f64>().ok());
    assert_eq!(got, Some(k as f64), "the read right after write {k} missed it: {v}");
}

/// Every sample `0..n` of `rw` comes back from one range query.
fn all_of_rw_back(base: &str, t0: i64, n: i64) {
    let at = (t0 + (n - 1) * 1000) as f64 / 1000.0;
    let (status, v) = query(base, &format!("rw[{}s]", n + 1), Some(at));
    assert_eq!(status, 200, "{v}");
    let got: BTreeSet<i64> = result(&v)
        .iter()
        .flat_map(|s| {
            s["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap() as i64)
        })
        .collect();
    assert_eq!(got, (0..n).collect::<BTreeSet<i64>>(), "acknowledged samples missing");
}

/// Reads served by each replica as a follower, from the status page.
fn follower_reads(c: &Cluster) -> std::collections::BTreeMap<String, u64> {
    let st = c.status();
    let reps = st["data"]["shards"][0]["replicas"].as_array().unwrap().clone();
    reps.iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["follower_reads"].as_u64().unwrap_or(0))).collect()
}

/// A querier in follower mode (`cluster up --read-replica follower`) reads
/// the replicas in turn, and a read right after a write's acknowledgement
/// sees it whichever replica serves it (a follower first gets the leader's
/// read index and applies it): before, while and after a follower is killed;
/// and a follower cut off from the leader (raft traffic through a proxy),
/// still reachable by the querier, serves no read: it cannot get a read
/// index, so the querier reads another replica instead of its stale data.
#[test]
fn follower_reads_see_every_acknowledged_sample_while_a_follower_is_down() {
    let (c, proxy) = Cluster::start_behind_proxy(&["--read-replica", "follower"]);
    let t0 = now_ms() - 3_600_000;
    let leader = c.leader(0, None);
    for k in 0..30 {
        write_then_read(&c.base, t0, k);
    }
    // The status page refreshes every second.
    std::thread::sleep(Duration::from_millis(1500));
    let served = follower_reads(&c);
    let followers: Vec<&String> = served.keys().filter(|id| **id != leader).collect();
    for f in &followers {
        assert!(served[*f] > 0, "follower {f} served no read: {served:?}");
    }

    // A follower killed and kept down (the supervisor held): reads that
    // would go to it fail over to the other replicas.
    let victim = followers[0].clone();
    let sup = c.sup.child.id();
    signal(sup, Signal::SIGSTOP);
    let pid = c.pid(&victim);
    kill9(pid);
    for k in 30..60 {
        write_then_read(&c.base, t0, k);
    }
    all_of_rw_back(&c.base, t0, 60);
    signal(sup, Signal::SIGCONT);

    // Back (restarted by the supervisor, serving) and caught up, it serves
    // reads again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = |c: &Cluster| {
        let p = c.processes().into_iter().find(|p| p["id"] == victim.as_str()).unwrap();
        let url = format!("{}/-/ready", p["http"].as_str().unwrap());
        p["pid"].as_u64() != Some(pid as u64) && client().get(url).send().is_ok_and(|r| r.status().is_success())
    };
    while !ready(&c) {
        assert!(Instant::now() < deadline, "{victim} was not restarted:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The status page answers from a poll at most a second old.
    std::thread::sleep(Duration::from_millis(1500));
    c.converged();
    let before = follower_reads(&c)[&victim];
    for k in 60..90 {
        write_then_read(&c.base, t0, k);
    }
    all_of_rw_back(&c.base, t0, 90);
    std::thread::sleep(Duration::from_millis(1500));
    let after = follower_reads(&c);
    assert!(after[&victim] > before, "the restarted {victim} served no read: {after:?}\n{}", c.logs());
    eprintln!("follower reads by replica (leader {leader}, {victim} killed and restarted): {after:?}");

    let leader = c.leader(0, None);
    let cut = ["ingester-0", "ingester-1", "ingester-2"].into_iter().find(|id| *id != leader).unwrap();
    proxy.isolate(cut);
    let before = follower_reads(&c)[cut];
    for k in 90..120 {
        write_then_read(&c.base, t0, k);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let during = follower_reads(&c);
    assert_eq!(during[cut], before, "{cut}, cut off from the leader, served reads: {during:?}");
    proxy.heal(cut);
    c.converged();
    for k in 120..130 {
        write_then_read(&c.base, t0, k);
    }
    all_of_rw_back(&c.base, t0, 130);
}
