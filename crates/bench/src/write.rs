//! `pharos bench write`: remote_write load at a fixed sample rate.
//!
//! The scheduler walks the [`WritePlan`] and hands each request, at its send
//! time, to the sender that owns its series block (so one series is never
//! sent out of order). Senders encode on the blocking pool, POST, and report
//! to a shared tally; a 2xx answer appends the request's rectangle to the ack
//! log, written by its own thread. If the target is slower than the plan the
//! run falls behind (reported) rather than dropping samples.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::Error;
use crate::acklog::{self, Ack, Header};
use crate::http;
use crate::model::Churn;
use crate::schedule::{Request, WritePlan};
use crate::stats::{Summary, Tally, si};

/// A validated `write` invocation.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    pub url: String,
    pub series: u64,
    pub rate: f64,
    pub duration_ms: i64,
    pub churn_per_minute: u64,
    pub batch: u64,
    pub concurrency: usize,
    pub series_per_instance: u64,
    pub job: String,
    pub ack_log: Option<PathBuf>,
    pub headers: Vec<String>,
    pub timeout: Duration,
    pub progress: Duration,
    pub summary_json: Option<PathBuf>,
}

/// The outcome of a run, also written as JSON with `--summary-json`.
#[derive(Debug, serde::Serialize)]
pub struct WriteReport {
    pub url: String,
    pub series: u64,
    pub rate_asked: f64,
    pub rate_planned: f64,
    pub elapsed_s: f64,
    pub samples_planned: u64,
    pub samples_sent: u64,
    pub samples_acked: u64,
    pub samples_per_s: f64,
    pub latency: Summary,
    pub first_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    tally: Tally,
    sent: u64,
    acked: u64,
    first_error: Option<String>,
}

/// Runs the load, prints progress and a summary; fails if any request failed.
pub async fn run(cfg: WriteConfig) -> Result<WriteReport, Error> {
    let plan = WritePlan::new(cfg.series, cfg.rate, cfg.duration_ms, cfg.batch)?;
    if cfg.concurrency == 0 || cfg.series_per_instance == 0 {
        return Err(Error::Invalid("--concurrency and --series-per-instance must be positive".into()));
    }
    let client = http::client(cfg.timeout, http::parse_headers(&cfg.headers)?)?;
    let start_ms = http::now_ms();
    let header = Arc::new(Header {
        job: cfg.job.clone(),
        series: plan.series,
        series_per_instance: cfg.series_per_instance,
        start_ms,
        interval_ms: plan.interval_ms,
        intervals: plan.intervals,
        churn: Churn { per_minute: cfg.churn_per_minute, start_ms },
    });
    let (ack_tx, ack_thread) = match &cfg.ack_log {
        Some(path) => {
            let (tx, thread) = start_ack_writer(path.clone(), &header)?;
            (Some(tx), Some(thread))
        }
        None => (None, None),
    };
    eprintln!(
        "write: {} series, {}/s ({} ms per series), {} samples over {:.0} s, {} per request, {} senders -> {}",
        plan.series,
        si(plan.effective_rate()),
        plan.interval_ms,
        plan.total_samples(),
        cfg.duration_ms as f64 / 1000.0,
        plan.series_per_request * plan.intervals_per_request,
        cfg.concurrency,
        cfg.url
    );

    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..cfg.concurrency {
        let (tx, rx) = mpsc::channel::<Request>(8);
        senders.push(tx);
        let ctx = Sender {
            client: client.clone(),
            url: cfg.url.clone(),
            header: header.clone(),
            shared: shared.clone(),
            acks: ack_tx.clone(),
        };
        workers.push(tokio::spawn(ctx.run(rx)));
    }
    drop(ack_tx);

    let t0 = Instant::now();
    let lag = Arc::new(Mutex::new(0_i64));
    let progress = tokio::spawn(progress_loop(shared.clone(), lag.clone(), t0, cfg.progress));
    // The stretch of the plan handed to senders so far.
    let mut covered_ms = 0_i64;
    let schedule = async {
        for req in plan.requests() {
            tokio::time::sleep_until((t0 + Duration::from_millis(req.send_at_ms as u64)).into()).await;
            if senders[(req.block % senders.len() as u64) as usize].send(req).await.is_err() {
                break;
            }
            // How late the request reached its sender (a full queue waits).
            *lag.lock() = t0.elapsed().as_millis() as i64 - req.send_at_ms;
            covered_ms = covered_ms.max(req.k1 as i64 * plan.interval_ms);
        }
    };
    tokio::select! {
        () = schedule => {}
        () = crate::terminated() => eprintln!("write: interrupted, waiting for requests in flight"),
    }
    drop(senders);
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    if let Some(t) = ack_thread {
        t.join().map_err(|_| Error::Failed("the ack log writer panicked".into()))??;
    }

    let elapsed = t0.elapsed().as_secs_f64();
    let s = shared.lock();
    let report = WriteReport {
        url: cfg.url.clone(),
        series: plan.series,
        rate_asked: cfg.rate,
        rate_planned: plan.effective_rate(),
        elapsed_s: elapsed,
        samples_planned: plan.total_samples(),
        samples_sent: s.sent,
        samples_acked: s.acked,
        // Over the stretch of the plan that was sent at least: the last
        // interval's requests go out before that interval ends.
        samples_per_s: s.acked as f64 / elapsed.max(covered_ms as f64 / 1000.0),
        latency: s.tally.summary(),
        first_error: s.first_error.clone(),
    };
    drop(s);
    print_summary(&report, cfg.ack_log.as_deref());
    if let Some(p) = &cfg.summary_json {
        crate::write_json(p, &report)?;
    }
    if report.latency.errors > 0 {
        return Err(Error::Failed(format!(
            "write: {} of {} requests failed",
            report.latency.errors, report.latency.requests
        )));
    }
    Ok(report)
}

fn print_summary(r: &WriteReport, ack_log: Option<&std::path::Path>) {
    eprintln!(
        "write: done in {:.1} s: {} of {} planned samples acknowledged, {}/s (planned {}/s), {} requests",
        r.elapsed_s,
        r.samples_acked,
        r.samples_planned,
        si(r.samples_per_s),
        si(r.rate_planned),
        r.latency.requests
    );
    eprintln!("write: latency {}", r.latency.latency_line());
    eprintln!("write: errors {}", r.latency.errors_line());
    if let Some(e) = &r.first_error {
        eprintln!("write: first error: {e}");
    }
    if let Some(p) = ack_log {
        eprintln!("write: ack log {}", p.display());
    }
}

async fn progress_loop(shared: Arc<Mutex<Shared>>, lag: Arc<Mutex<i64>>, t0: Instant, every: Duration) {
    let mut tick = tokio::time::interval_at((t0 + every).into(), every);
    let (mut last_acked, mut last_n) = (0, 0);
    loop {
        tick.tick().await;
        let el = t0.elapsed();
        let behind = *lag.lock();
        let s = shared.lock();
        let recent = &s.tally.latencies_us[last_n..];
        let mut recent = recent.to_vec();
        recent.sort_unstable();
        let p99 = crate::stats::percentile(&recent, 99.0).unwrap_or(0) as f64 / 1000.0;
        let rate = (s.acked - last_acked) as f64 / every.as_secs_f64();
        eprintln!(
            "write: {:>5.0} s  acked {:>8}  {:>7}/s  errors {}  p99 {:.1} ms{}",
            el.as_secs_f64(),
            si(s.acked as f64),
            si(rate),
            s.tally.error_count(),
            p99,
            if behind > 1000 { format!("  behind schedule {:.1} s", behind as f64 / 1000.0) } else { String::new() }
        );
        (last_acked, last_n) = (s.acked, s.tally.latencies_us.len());
    }
}

/// One sender: the requests of its series blocks, one at a time, in order.
struct Sender {
    client: reqwest::Client,
    url: String,
    header: Arc<Header>,
    shared: Arc<Mutex<Shared>>,
    acks: Option<std::sync::mpsc::Sender<Ack>>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Request>) {
        while let Some(req) = rx.recv().await {
            let h = self.header.clone();
            let Ok(body) = tokio::task::spawn_blocking(move || crate::encode::body(&h, &req)).await else {
                self.fail("encode".into(), 0, None);
                continue;
            };
            let samples = req.samples();
            self.shared.lock().sent += samples;
            let t = Instant::now();
            let res = self
                .client
                .post(&self.url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await;
            let (status, text) = match res {
                Ok(r) => (r.status(), r.text().await.unwrap_or_default()),
                Err(e) => {
                    self.fail(http::error_kind(&e), t.elapsed().as_micros() as u64, Some(e.to_string()));
                    continue;
                }
            };
            let us = t.elapsed().as_micros() as u64;
            if !status.is_success() {
                self.fail(format!("http {}", status.as_u16()), us, Some(text));
                continue;
            }
            if let Some(a) = &self.acks {
                let _ = a.send(Ack { k0: req.k0, k1: req.k1, lo: req.lo, hi: req.hi });
            }
            let mut s = self.shared.lock();
            s.tally.ok(us);
            s.acked += samples;
        }
    }

    fn fail(&self, kind: String, us: u64, detail: Option<String>) {
        let mut s = self.shared.lock();
        s.tally.error(kind.clone(), us);
        if s.first_error.is_none() {
            let d: String = detail.unwrap_or_default().chars().take(300).collect();
            s.first_error = Some(format!("{kind}: {}", d.trim()));
        }
    }
}

/// The ack log's writer thread (file I/O off the async workers); it flushes
/// whenever it has caught up, so a killed run loses at most a torn line.
type AckWriter = (std::sync::mpsc::Sender<Ack>, std::thread::JoinHandle<Result<(), Error>>);

fn start_ack_writer(path: PathBuf, header: &Header) -> Result<AckWriter, Error> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
    acklog::write_header(&mut w, header)?;
    let (tx, rx) = std::sync::mpsc::channel::<Ack>();
    let thread = std::thread::spawn(move || -> Result<(), Error> {
        use std::io::Write;
        w.flush()?;
        while let Ok(first) = rx.recv() {
            acklog::write_ack(&mut w, &first)?;
            while let Ok(a) = rx.try_recv() {
                acklog::write_ack(&mut w, &a)?;
            }
            w.flush()?;
        }
        w.flush()?;
        Ok(())
    });
    Ok((tx, thread))
}
