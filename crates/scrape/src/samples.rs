//! What one scrape's parsed samples become, as Prometheus 2.42's
//! `scrapeLoop.append`: target labels merged (`honor_labels`),
//! `metric_relabel_configs` applied, the label and sample limits enforced,
//! timestamps chosen (`honor_timestamps`). Pure: no I/O, no clock.

use std::collections::HashSet;

use pharos_exposition::ParsedSample;
use pharos_model::{Labels, METRIC_NAME, Sample};
use pharos_tsdb::SeriesSamples;

use crate::config::ScrapeConfig;
use crate::relabel;
use crate::target::sample_labels;

/// The result of one scrape body.
#[derive(Debug, Default)]
pub struct Processed {
    /// The samples to write; empty when the scrape failed.
    pub series: Vec<SeriesSamples>,
    /// Label sets that get staleness tracking (no explicit timestamp).
    pub tracked: HashSet<Labels>,
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

/// Turns the parsed samples of a scrape at `ts` into what is written.
pub fn process(samples: Vec<ParsedSample>, target: &Labels, job: &ScrapeConfig, ts: i64) -> Processed {
    let mut out = Processed { scraped: samples.len(), ..Processed::default() };
    out.series.reserve(samples.len());
    for (i, s) in samples.into_iter().enumerate() {
        let labels = sample_labels(target, &s.labels, job.honor_labels);
        let Some(labels) = relabel::process(&labels, &job.metric_relabel_configs) else { continue };
        if labels.metric_name().is_none_or(str::is_empty) {
            out.error = Some(format!("missing metric name ({METRIC_NAME} label)"));
            out.scraped = i + 1;
            break;
        }
        if let Err(e) = check_label_limits(&labels, job) {
            out.error = Some(e);
            out.scraped = i + 1;
            break;
        }
        out.post_relabel += 1;
        let t = match s.timestamp_ms {
            Some(explicit) if job.honor_timestamps => explicit,
            _ => {
                out.tracked.insert(labels.clone());
                ts
            }
        };
        out.series.push(SeriesSamples { labels, samples: vec![Sample::new(t, s.value)] });
    }
    if out.error.is_none() && job.sample_limit > 0 && out.post_relabel as u64 > job.sample_limit {
        out.error = Some("sample limit exceeded".into());
    }
    if out.error.is_some() {
        out.series.clear();
        out.tracked.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use pharos_exposition::{Format, parse};

    fn job(extra: &str) -> ScrapeConfig {
        Config::parse(&format!("scrape_configs: [{{job_name: j{extra}}}]")).unwrap().scrape_configs.remove(0)
    }

    fn run(body: &str, job: &ScrapeConfig) -> Processed {
        let target = Labels::from_pairs(&[("job", "j"), ("instance", "i:1")]);
        process(parse(body, Format::PrometheusText).unwrap().samples, &target, job, 1_000)
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
        assert_eq!(p.tracked.len(), 2, "the sample with a timestamp is not tracked");
        let p = run(BODY, &job(", honor_timestamps: false"));
        assert_eq!(p.series[1].samples[0].t, 1_000);
        assert_eq!(p.tracked.len(), 3);
    }

    #[test]
    fn sample_limit_fails_the_whole_scrape() {
        let p = run(BODY, &job(", sample_limit: 2"));
        assert_eq!(p.error.as_deref(), Some("sample limit exceeded"));
        assert!(p.series.is_empty() && p.tracked.is_empty());
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
