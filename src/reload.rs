//! Wiring of configuration reload (`pharos_scrape::Reloader`) into a
//! scraping process: its metrics on `/metrics`, SIGHUP, and the handler
//! behind `POST /-/reload`.

use std::path::PathBuf;
use std::sync::Arc;

use pharos_api::Metrics;
use pharos_scrape::{Reloader, Scraper};

/// A reloader for `scraper` whose outcome `metrics` shows, reloading on
/// SIGHUP; returns it with the handler for `POST /-/reload`.
pub fn start(path: Option<PathBuf>, scraper: Arc<Scraper>, metrics: &Metrics) -> pharos_api::Reload {
    let reloader = Reloader::new(path, scraper);
    let m = reloader.clone();
    metrics.register(move |e| m.write_metrics(e));
    reloader.reload_on_sighup();
    Arc::new(move || {
        let me = reloader.clone();
        Box::pin(async move { me.reload().await })
    })
}
