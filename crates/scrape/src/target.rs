//! Targets from the configuration, their labels and their owner: pure
//! functions, no I/O.

use std::sync::Arc;

use pharos_model::{Label, Labels};

use crate::config::{Config, ScrapeConfig};

/// One endpoint to scrape.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: Arc<ScrapeConfig>,
    pub address: String,
    /// Labels every sample of the target gets: `job`, `instance` and the
    /// static labels.
    pub labels: Labels,
    pub url: String,
    /// Stable identity: job, address, path and params. Keys the scraper
    /// ring and the scrape slot.
    pub key: u64,
}

/// Every target of the configuration, in order, without duplicates.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for job in &config.scrape_configs {
        let job = Arc::new(job.clone());
        for sc in &job.static_configs {
            for address in &sc.targets {
                let mut labels: Vec<Label> = config
                    .external_labels
                    .iter()
                    .chain(sc.labels.iter())
                    .map(|(k, v)| Label { name: k.clone(), value: v.clone() })
                    .collect();
                labels.push(Label { name: "job".into(), value: job.job_name.clone() });
                labels.push(Label { name: "instance".into(), value: address.clone() });
                let mut query = String::new();
                for (k, vs) in &job.params {
                    for v in vs {
                        query.push(if query.is_empty() { '?' } else { '&' });
                        query.push_str(&format!("{}={}", encode(k), encode(v)));
                    }
                }
                let url = format!("{}://{}{}{}", job.scheme, address, job.metrics_path, query);
                let key = xxhash_rust::xxh3::xxh3_64(format!("{}\u{0}{}", job.job_name, url).as_bytes());
                if out.iter().any(|t| t.key == key) {
                    continue;
                }
                out.push(Target { job: job.clone(), address: address.clone(), labels: Labels::new(labels), url, key });
            }
        }
    }
    out
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The delay from `now_ms` to this target's next scrape slot. Slots are
/// spread over the interval by the target key, so a target keeps its slot
/// whichever scraper owns it.
pub fn next_slot_delay(key: u64, interval_ms: i64, now_ms: i64) -> i64 {
    let interval = interval_ms.max(1);
    let offset = (key % interval as u64) as i64;
    let phase = (now_ms - offset).rem_euclid(interval);
    if phase == 0 { 0 } else { interval - phase }
}

/// The labels of a scraped sample: target labels win over the sample's
/// unless `honor_labels`; a losing sample label is kept as `exported_<name>`.
pub fn sample_labels(target: &Labels, scraped: &Labels, honor_labels: bool) -> Labels {
    let mut out = scraped.clone();
    for l in target.iter() {
        match out.get(&l.name) {
            None => out.set(&l.name, &l.value),
            Some(_) if honor_labels => {}
            Some(v) => {
                let v = v.to_string();
                out.set(&format!("exported_{}", l.name), &v);
                out.set(&l.name, &l.value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels_and_urls() {
        let c = Config::parse(
            "scrape_configs: [{job_name: n, params: {a: [x y]}, static_configs: [{targets: ['h:1', 'h:1', 'h:2'], labels: {env: p}}]}]",
        )
        .unwrap();
        let t = targets(&c);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].url, "http://h:1/metrics?a=x%20y");
        assert_eq!(t[0].labels.to_string(), r#"{env="p", instance="h:1", job="n"}"#);
    }

    #[test]
    fn slots_are_aligned() {
        for now in [0, 1, 14_999, 15_000, 123_456] {
            let d = next_slot_delay(7, 15_000, now);
            assert!((0..15_000).contains(&d));
            assert_eq!((now + d - 7).rem_euclid(15_000), 0);
        }
    }

    #[test]
    fn label_conflicts() {
        let target = Labels::from_pairs(&[("job", "j"), ("instance", "i")]);
        let scraped = Labels::from_pairs(&[("__name__", "m"), ("job", "x")]);
        let l = sample_labels(&target, &scraped, false);
        assert_eq!(l.to_string(), r#"m{exported_job="x", instance="i", job="j"}"#);
        let l = sample_labels(&target, &scraped, true);
        assert_eq!(l.to_string(), r#"m{instance="i", job="x"}"#);
    }
}
