//! What one scrape's body becomes, as Prometheus 2.42's
//! `scrapeLoop.append`: target labels merged (`honor_labels`),
//! `metric_relabel_configs` applied, the label and sample limits enforced,
//! timestamps chosen (`honor_timestamps`). A series text met before takes
//! its label set from the target's [`SeriesCache`] instead. Pure: no I/O,
//! no clock.

use pharos_exposition::{Format, parse_each};
use pharos_model::{Labels, METRIC_NAME, Sample};
use pharos_storage::SeriesSamples;

use crate::cache::{Known, SeriesCache};
use crate::config::ScrapeConfig;
use crate::relabel;
use crate::target::sample_labels;

/// The result of one scrape body.
#[derive(Debug, Default)]
pub struct Processed {
    /// The samples to write; empty when the scrape failed.
    pub series: Vec<SeriesSamples>,
    /// Samples in the body (`scrape_samples_scraped`).
    pub scraped: usize,
    /// Samples left after metric relabeling
    /// (`scrape_samples_post_metric_relabeling`).
    pub post_relabel: usize,
    /// Why the whole scrape failed (`up` = 0), if it did.
    pub error: Option<String>,
}

/// Prometheus's `verifyLabelLimits`.
fn check_label_limits(l: &Labels, job: &ScrapeConfig) -> Result<(), String> {
    let met = truncate(l.metric_name().unwrap_or(""), 50);
    if job.label_limit > 0 && l.len() as u64 > job.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {met}, number of labels: {}, limit: {})",
            l.len(),
            job.label_limit
        ));
    }
    for label in l.iter() {
        let name = truncate(&label.name, 50);
        if job.label_name_length_limit > 0 && label.name.len() as u64 > job.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {met}, label name: {name}, length: {}, limit: {})",
                label.name.len(),
                job.label_name_length_limit
            ));
        }
        let chars = label.value.chars().count() as u64;
        if job.label_value_length_limit > 0 && chars > job.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {met}, label name: {name}, value: {:?}, length: {chars}, limit: {})",
                truncate(&label.value, 50),
                job.label_value_length_limit
            ));
        }
    }
    Ok(())
}

/// Go's `%.50s`: at most `n` characters.
fn truncate(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// What the target labels and metric relabeling make of one scraped label
/// set: `None` when it is dropped; an error fails the scrape.
pub fn admit(scraped: &Labels, target: &Labels, job: &ScrapeConfig) -> Result<Option<Labels>, String> {
    let labels = sample_labels(target, scraped, job.honor_labels);
    let Some(labels) = relabel::process(&labels, &job.metric_relabel_configs) else { return Ok(None) };
    if labels.metric_name().is_none_or(str::is_empty) {
        return Err(format!("missing metric name ({METRIC_NAME} label)"));
    }
    check_label_limits(&labels, job)?;
    Ok(Some(labels))
}

/// Turns the body of a scrape at `ts` into what is written, noting in
/// `cache` (between its `begin` and `finish`) which series it writes.
pub fn process(
    body: &str,
    format: Format,
    target: &Labels,
    job: &ScrapeConfig,
    ts: i64,
    cache: &mut SeriesCache,
) -> Processed {
    let mut out = Processed::default();
    // The first sample that failed the scrape: the rest are only counted.
    let mut failed_at = None;
    let parsed = parse_each(body, format, |s| {
        out.scraped += 1;
        if failed_at.is_some() {
            return;
        }
        let id = match cache.lookup(s.series) {
            Some(Known::Dropped) => return,
            Some(Known::Series(id)) => id,
            None => match admit(&s.labels(), target, job) {
                Ok(None) => return cache.insert_dropped(s.series),
                Ok(Some(labels)) => cache.insert(s.series, labels),
                Err(e) => {
                    out.error = Some(e);
                    failed_at = Some(out.scraped);
                    return;
                }
            },
        };
        let Some(labels) = cache.labels(id) else { return };
        out.post_relabel += 1;
        // Only samples without an explicit timestamp get staleness tracking.
        let (t, tracked) = match s.timestamp_ms {
            Some(explicit) if job.honor_timestamps => (explicit, false),
            _ => (ts, true),
        };
        out.series.push(SeriesSamples { labels: labels.clone(), samples: vec![Sample::new(t, s.value)] });
        cache.write(id, tracked);
    });
    if let Err(e) = parsed {
        return Processed { error: Some(e.to_string()), ..Processed::default() };
    }
    if let Some(n) = failed_at {
        out.scraped = n;
    }
    if out.error.is_none() && job.sample_limit > 0 && out.post_relabel as u64 > job.sample_limit {
        out.error = Some("sample limit exceeded".into());
    }
    if out.error.is_some() {
        out.series.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn job(extra: &str) -> ScrapeConfig {
        Config::parse(&format!("scrape_configs: [{{job_name: j{extra}}}]")).unwrap().scrape_configs.remove(0)
    }

    fn scrape(body: &str, job: &ScrapeConfig, cache: &mut SeriesCache) -> Processed {
        let target = Labels::from_pairs(&[("job", "j"), ("instance", "i:1")]);
        cache.begin();
        let p = process(body, Format::PrometheusText, &target, job, 1_000, cache);
        cache.finish(p.error.is_none());
        p
    }

    fn run(body: &str, job: &ScrapeConfig) -> Processed {
        scrape(body, job, &mut SeriesCache::default())
    }

    /// How many series of `body` get staleness tracking: the markers an
    /// empty scrape after it writes.
    fn tracked(body: &str, job: &ScrapeConfig) -> usize {
        let mut cache = SeriesCache::default();
        scrape(body, job, &mut cache);
        cache.begin();
        cache.finish(true).1.len()
    }

    const BODY: &str = "a 1\nb{x=\"1\"} 2 500\ngo_gc 3\n";

    #[test]
    fn metric_relabeling_drops_and_rewrites_samples() {
        let j = job(
            ", metric_relabel_configs: [{source_labels: [__name__], regex: 'go_.*', action: drop}, {source_labels: [x], target_label: y}]",
        );
        let p = run(BODY, &j);
        assert_eq!((p.scraped, p.post_relabel, p.error), (3, 2, None));
        let names: Vec<String> = p.series.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(names, [r#"a{instance="i:1", job="j"}"#, r#"b{instance="i:1", job="j", x="1", y="1"}"#]);
        // Metric relabeling sees the target labels.
        let j = job(", metric_relabel_configs: [{source_labels: [instance], regex: 'i:1', action: drop}]");
        assert_eq!(run(BODY, &j).post_relabel, 0);
    }

    #[test]
    fn timestamps_and_staleness_tracking() {
        let p = run(BODY, &job(""));
        assert_eq!(p.series[1].samples[0].t, 500);
        assert_eq!(tracked(BODY, &job("")), 2, "the sample with a timestamp is not tracked");
        let p = run(BODY, &job(", honor_timestamps: false"));
        assert_eq!(p.series[1].samples[0].t, 1_000);
        assert_eq!(tracked(BODY, &job(", honor_timestamps: false")), 3);
    }

    #[test]
    fn a_scrape_from_the_cache_writes_the_same() {
        let j = job(", metric_relabel_configs: [{source_labels: [__name__], regex: 'go_.*', action: drop}]");
        let mut cache = SeriesCache::default();
        let first = scrape(BODY, &j, &mut cache);
        let second = scrape(BODY, &j, &mut cache);
        assert_eq!(first.series, second.series);
        assert_eq!((second.scraped, second.post_relabel, second.error), (3, 2, None));
        // A new text for a known series is the same series.
        let third = scrape("b{x=\"1\",} 2 500\n", &j, &mut cache);
        assert_eq!(third.series[0].labels, first.series[1].labels);
    }

    #[test]
    fn sample_limit_fails_the_whole_scrape() {
        let p = run(BODY, &job(", sample_limit: 2"));
        assert_eq!(p.error.as_deref(), Some("sample limit exceeded"));
        assert!(p.series.is_empty());
        assert_eq!((p.scraped, p.post_relabel), (3, 3));
        // The limit counts samples after metric relabeling.
        let j = job(", sample_limit: 2, metric_relabel_configs: [{source_labels: [__name__], regex: a, action: drop}]");
        assert_eq!(run(BODY, &j).error, None);
    }

    #[test]
    fn label_limits_fail_the_whole_scrape() {
        let e = run(BODY, &job(", label_limit: 3")).error.unwrap();
        assert!(e.starts_with("label_limit exceeded (metric: b, number of labels: 4, limit: 3)"), "{e}");
        let e = run(BODY, &job(", label_name_length_limit: 7")).error.unwrap();
        assert!(e.starts_with("label_name_length_limit exceeded (metric: a, label name: __name__, length: 8"), "{e}");
        let e = run(BODY, &job(", label_value_length_limit: 2")).error.unwrap();
        assert!(
            e.contains("label_value_length_limit exceeded (metric: a, label name: instance, value: \"i:1\""),
            "{e}"
        );
        assert!(
            run(BODY, &job(", label_limit: 4, label_name_length_limit: 8, label_value_length_limit: 5"))
                .error
                .is_none()
        );
    }

    #[test]
    fn relabeling_away_the_name_fails_the_scrape() {
        let p = run(BODY, &job(", metric_relabel_configs: [{regex: __name__, action: labeldrop}]"));
        assert_eq!(p.error.as_deref(), Some("missing metric name (__name__ label)"));
    }
}
