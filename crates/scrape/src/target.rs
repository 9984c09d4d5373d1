//! Targets from discovered target groups, their labels and their owner:
//! pure functions, no I/O.
//!
//! The label pipeline is Prometheus 2.42's `PopulateLabels`: the discovered
//! labels get `job`, `__address__`, `__scheme__`, `__metrics_path__`,
//! `__scrape_interval__`, `__scrape_timeout__` and `__param_<name>` where
//! not already set; `relabel_configs` run; a target without `__address__`
//! is dropped; a port is added for the scheme when the address has none;
//! `__meta_*` labels are removed, `instance` defaults to `__address__`, and
//! the labels a sample gets are those not starting with `__`.

use std::sync::Arc;

use pharos_model::{Label, Labels};

use crate::config::{Config, ScrapeConfig};
use crate::discovery::TargetGroup;
use crate::relabel;

/// One endpoint to scrape.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: Arc<ScrapeConfig>,
    pub address: String,
    /// Labels every sample of the target gets: the labels after relabeling
    /// that do not start with `__` (`job`, `instance`, ...). The global
    /// `external_labels` are not among them: Prometheus attaches those only
    /// to data it sends elsewhere, never to what it stores and queries.
    pub labels: Labels,
    /// The labels as discovered, before relabeling (`__meta_*` included),
    /// for the targets page.
    pub discovered_labels: Labels,
    pub url: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    /// Stable identity: URL, interval, timeout and labels. Keys the scraper
    /// ring and the scrape slot.
    pub key: u64,
}

/// Formats milliseconds as Prometheus's `model.Duration` does (`1m30s`).
pub fn fmt_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut ms = ms;
    let mut out = String::new();
    for (unit, mult, exact) in [
        ("y", 31_536_000_000, true),
        ("w", 604_800_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    out
}

/// The static groups of a job.
pub fn static_groups(job: &ScrapeConfig) -> Vec<TargetGroup> {
    job.static_configs
        .iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            targets: sc.targets.clone(),
            labels: sc.labels.clone(),
            source: i.to_string(),
            ..TargetGroup::default()
        })
        .collect()
}

/// Go's `net.SplitHostPort` succeeds: `host:port` or `[v6]:port`.
fn has_port(addr: &str) -> bool {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.find(']').is_some_and(|i| rest[i + 1..].starts_with(':') && !rest[i + 2..].contains([':', ']']));
    }
    addr.matches(':').count() == 1 && !addr.contains(['[', ']'])
}

/// The target's labels after the pipeline; `Ok(None)` when relabeling
/// dropped it, `Err` when the result is not a valid target.
pub fn populate_labels(discovered: &Labels, job: &ScrapeConfig) -> Result<Option<Labels>, String> {
    let mut lb = discovered.clone();
    for (name, value) in [
        ("job", job.job_name.clone()),
        ("__scrape_interval__", fmt_duration(job.interval_ms)),
        ("__scrape_timeout__", fmt_duration(job.timeout_ms)),
        ("__metrics_path__", job.metrics_path.clone()),
        ("__scheme__", job.scheme.clone()),
    ] {
        if lb.get(name).is_none() {
            lb.set(name, &value);
        }
    }
    for (k, v) in &job.params {
        if let Some(first) = v.first() {
            lb.set(&format!("__param_{k}"), first);
        }
    }
    let Some(mut lb) = relabel::process(&lb, &job.relabel_configs) else { return Ok(None) };
    let Some(mut addr) = lb.get("__address__").map(str::to_string) else { return Err("no address".into()) };
    if !has_port(&addr) && has_port(&format!("{addr}:1234")) {
        match lb.get("__scheme__").unwrap_or("") {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            _ => return Err(format!("invalid scheme: {:?}", job.scheme)),
        }
        lb.set("__address__", &addr);
    }
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval = lb.get("__scrape_interval__").unwrap_or("").to_string();
    let timeout = lb.get("__scrape_timeout__").unwrap_or("").to_string();
    let interval_ms =
        pharos_model::parse_duration_ms(&interval).map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if interval_ms == 0 {
        return Err("scrape interval cannot be 0".into());
    }
    let timeout_ms =
        pharos_model::parse_duration_ms(&timeout).map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if timeout_ms == 0 {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout_ms > interval_ms {
        return Err(format!("scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"));
    }
    let meta: Vec<String> = lb.iter().filter(|l| l.name.starts_with("__meta_")).map(|l| l.name.clone()).collect();
    for name in meta {
        lb.set(&name, "");
    }
    if lb.get("instance").is_none() {
        lb.set("instance", &addr);
    }
    Ok(Some(lb))
}

impl Target {
    /// A target from the labels [`populate_labels`] returned.
    fn new(job: &Arc<ScrapeConfig>, full: &Labels, discovered: Labels) -> Result<Target, String> {
        let get = |n: &str| full.get(n).unwrap_or("").to_string();
        let address = get("__address__");
        let mut params = job.params.clone();
        for l in full.iter() {
            if let Some(k) = l.name.strip_prefix("__param_") {
                let vs = params.entry(k.to_string()).or_default();
                match vs.first_mut() {
                    Some(first) => *first = l.value.clone(),
                    None => vs.push(l.value.clone()),
                }
            }
        }
        let mut query = String::new();
        for (k, vs) in &params {
            for v in vs {
                query.push(if query.is_empty() { '?' } else { '&' });
                query.push_str(&format!("{}={}", encode(k), encode(v)));
            }
        }
        let url = format!("{}://{}{}{}", get("__scheme__"), address, get("__metrics_path__"), query);
        let labels = Labels::new(full.iter().filter(|l| !l.name.starts_with("__")).cloned().collect());
        let interval_ms = pharos_model::parse_duration_ms(&get("__scrape_interval__")).map_err(|e| e.to_string())?;
        let timeout_ms = pharos_model::parse_duration_ms(&get("__scrape_timeout__")).map_err(|e| e.to_string())?;
        let mut id = format!("{url}\u{0}{interval_ms}\u{0}{timeout_ms}\u{0}").into_bytes();
        labels.encode_into(&mut id);
        let key = xxhash_rust::xxh3::xxh3_64(&id);
        Ok(Target {
            job: job.clone(),
            address,
            labels,
            discovered_labels: discovered,
            url,
            interval_ms,
            timeout_ms,
            key,
        })
    }
}

/// What one job's groups yield.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The targets to scrape, in order, without duplicates.
    pub active: Vec<Target>,
    /// The discovered labels of the targets relabeling dropped, for the
    /// targets page (`droppedTargets`).
    pub dropped: Vec<Labels>,
}

/// Runs every target of one job's groups through the label pipeline.
/// Targets that are not valid are logged and left out of both lists.
pub fn discover<'a>(job: &Arc<ScrapeConfig>, groups: impl IntoIterator<Item = &'a TargetGroup>) -> Discovered {
    let mut out = Discovered::default();
    for g in groups {
        for discovered in g.discovered() {
            let made = populate_labels(&discovered, job)
                .and_then(|full| full.map(|full| Target::new(job, &full, discovered.clone())).transpose());
            match made {
                Ok(Some(t)) if !out.active.iter().any(|o| o.key == t.key) => out.active.push(t),
                Ok(Some(_)) => {}
                Ok(None) => out.dropped.push(discovered),
                Err(e) => {
                    tracing::warn!(job = %job.job_name, source = %g.source, labels = %discovered, error = %e, "creating target failed")
                }
            }
        }
    }
    out
}

/// The targets of one job's groups, in order, without duplicates.
pub fn targets_from_groups<'a>(
    job: &Arc<ScrapeConfig>,
    groups: impl IntoIterator<Item = &'a TargetGroup>,
) -> Vec<Target> {
    discover(job, groups).active
}

/// Every target of the configuration's static configs, in order, without
/// duplicates.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for job in &config.scrape_configs {
        let job = Arc::new(job.clone());
        out.extend(targets_from_groups(&job, &static_groups(&job)));
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

/// The labels of a scraped sample (before `metric_relabel_configs`), as
/// Prometheus's `mutateSampleLabels`: with `honor_labels` the sample's labels
/// win; otherwise the target's win and each conflicting sample label is kept
/// as `exported_<name>` (`exported_exported_<name>` if that is taken too).
pub fn sample_labels(target: &Labels, scraped: &Labels, honor_labels: bool) -> Labels {
    let mut out = scraped.clone();
    if honor_labels {
        for l in target.iter() {
            if scraped.get(&l.name).is_none() {
                out.set(&l.name, &l.value);
            }
        }
        return out;
    }
    let mut conflicts: Vec<Label> = Vec::new();
    for l in target.iter() {
        if let Some(v) = scraped.get(&l.name) {
            conflicts.push(Label { name: l.name.clone(), value: v.to_string() });
        }
        out.set(&l.name, &l.value);
    }
    conflicts.sort_by_key(|l| l.name.len());
    for i in 0..conflicts.len() {
        let mut name = conflicts[i].name.clone();
        loop {
            name = format!("exported_{name}");
            let taken = scraped.get(&name).is_some()
                || target.get(&name).is_some()
                || conflicts[..i].iter().any(|c| c.name == name);
            if !taken {
                break;
            }
        }
        conflicts[i].name = name;
    }
    for c in conflicts {
        out.set(&c.name, &c.value);
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

    fn job(yaml: &str) -> Arc<ScrapeConfig> {
        Arc::new(Config::parse(yaml).unwrap().scrape_configs.remove(0))
    }

    fn group(targets: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            source: "0".into(),
            ..TargetGroup::default()
        }
    }

    #[test]
    fn durations_print_like_prometheus() {
        for (ms, s) in [
            (0, "0s"),
            (15_000, "15s"),
            (90_000, "1m30s"),
            (500, "500ms"),
            (3_600_000, "1h"),
            (86_400_000 * 8, "8d"),
            (86_400_000 * 14, "2w"),
        ] {
            assert_eq!(fmt_duration(ms), s);
        }
    }

    #[test]
    fn label_pipeline_is_prometheus_populate_labels() {
        let j = job(r#"
scrape_configs:
  - job_name: sd
    scrape_interval: 30s
    params: {module: [a, b]}
    relabel_configs:
      - {source_labels: [__meta_keep], regex: 'yes', action: keep}
      - {source_labels: [__meta_zone], target_label: zone}
      - {source_labels: [__meta_module], target_label: __param_module}
"#);
        let g =
            group(&["h1", "h2:9", "h3/x"], &[("__meta_keep", "yes"), ("__meta_zone", "z1"), ("__meta_module", "m")]);
        let t = targets_from_groups(&j, [&g]);
        assert_eq!(t.len(), 2, "h3/x is not a valid hostname");
        assert_eq!(t[0].address, "h1:80", "a port is added for the scheme");
        assert_eq!(t[0].labels.to_string(), r#"{instance="h1:80", job="sd", zone="z1"}"#);
        assert_eq!(t[0].url, "http://h1:80/metrics?module=m&module=b", "__param_ replaces the first value");
        assert_eq!(t[0].interval_ms, 30_000);
        assert_eq!(t[0].discovered_labels.get("__meta_zone"), Some("z1"));
        assert_eq!(t[1].labels.get("instance"), Some("h2:9"));
        // keep drops the whole group without __meta_keep=yes; the dropped
        // targets keep their discovered labels.
        let g = group(&["h1"], &[("__meta_keep", "no")]);
        let d = discover(&j, [&g]);
        assert!(d.active.is_empty());
        assert_eq!(d.dropped[0].to_string(), r#"{__address__="h1", __meta_keep="no"}"#);
    }

    #[test]
    fn relabeling_can_set_address_instance_interval_and_drop_the_address() {
        let j = job(r#"
scrape_configs:
  - job_name: p
    scrape_interval: 1m
    relabel_configs:
      - {source_labels: [__address__], target_label: instance}
      - {source_labels: [__address__], regex: '(.*):\d+', target_label: __address__, replacement: '$1:9100'}
      - {target_label: __scrape_interval__, replacement: 2m}
      - {source_labels: [__meta_path], target_label: __metrics_path__}
"#);
        let g = group(&["n1:1"], &[("__meta_path", "/m")]);
        let t = &targets_from_groups(&j, [&g])[0];
        assert_eq!(t.url, "http://n1:9100/m");
        assert_eq!(t.labels.to_string(), r#"{instance="n1:1", job="p"}"#);
        assert_eq!(t.interval_ms, 120_000);
        let j = job("scrape_configs: [{job_name: p, relabel_configs: [{target_label: __address__, replacement: ''}]}]");
        assert_eq!(populate_labels(&Labels::from_pairs(&[("__address__", "a:1")]), &j), Err("no address".into()));
        let j = job(
            "scrape_configs: [{job_name: p, scrape_interval: 10s, relabel_configs: [{target_label: __scrape_timeout__, replacement: 1m}]}]",
        );
        let e = populate_labels(&Labels::from_pairs(&[("__address__", "a:1")]), &j).unwrap_err();
        assert!(e.contains("scrape timeout cannot be greater than scrape interval"), "{e}");
    }

    #[test]
    fn exported_prefix_repeats_until_free() {
        let target = Labels::from_pairs(&[("job", "j"), ("instance", "i")]);
        let scraped = Labels::from_pairs(&[("__name__", "m"), ("job", "x"), ("exported_job", "y")]);
        let l = sample_labels(&target, &scraped, false);
        assert_eq!(l.to_string(), r#"m{exported_exported_job="x", exported_job="y", instance="i", job="j"}"#);
    }
}
