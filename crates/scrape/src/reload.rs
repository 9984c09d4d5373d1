//! Configuration reload of a scraping process (`pharos up`, `pharos
//! scraper`), on SIGHUP and `POST /-/reload`, as Prometheus: the file is
//! read and validated again; a bad file is rejected with an error naming
//! the field and the running configuration stays; a good one is handed to
//! the [`Scraper`], which applies the difference. The outcome is exposed as
//! `pharos_config_last_reload_successful` and
//! `pharos_config_last_reload_success_timestamp_seconds`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use pharos_model::now_ms;

use crate::{Config, Scraper};

/// Reloads one scraper's configuration from its file.
pub struct Reloader {
    /// `None`: the built-in self-scrape configuration, nothing to re-read.
    path: Option<PathBuf>,
    scraper: Arc<Scraper>,
    /// One reload at a time, so two requests apply in order.
    busy: tokio::sync::Mutex<()>,
    last_ok: AtomicBool,
    last_success_ms: AtomicI64,
}

impl Reloader {
    /// A reloader whose current configuration was loaded (successfully) now.
    pub fn new(path: Option<PathBuf>, scraper: Arc<Scraper>) -> Arc<Self> {
        Arc::new(Reloader {
            path,
            scraper,
            busy: tokio::sync::Mutex::new(()),
            last_ok: AtomicBool::new(true),
            last_success_ms: AtomicI64::new(now_ms()),
        })
    }

    /// Writes the outcome of the last reload, as Prometheus names it.
    pub fn write_metrics(&self, e: &mut pharos_exposition::Exposition) {
        e.gauge(
            "pharos_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            if self.last_ok.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
        );
        e.gauge(
            "pharos_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            self.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
    }

    /// Reads, validates and applies the file; the error keeps the old configuration.
    pub async fn reload(&self) -> Result<(), String> {
        let _one = self.busy.lock().await;
        let Some(path) = self.path.clone() else {
            self.record(true);
            return Ok(());
        };
        let loaded = match tokio::task::spawn_blocking(move || Config::load(&path)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("reload task failed: {e}")),
        };
        match loaded {
            Ok(config) => {
                self.scraper.reload(&config);
                self.record(true);
                tracing::info!(jobs = config.scrape_configs.len(), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.record(false);
                tracing::error!(error = %e, "configuration reload failed; the previous configuration keeps running");
                Err(e)
            }
        }
    }

    fn record(&self, ok: bool) {
        self.last_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Reloads on every SIGHUP, for as long as the process runs.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload only");
                    return;
                }
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                // The outcome is logged and on the gauge.
                let _ = me.reload().await;
            }
        });
    }
}
