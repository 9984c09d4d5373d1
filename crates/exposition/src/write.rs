//! The writing side of the text format, for Pharos's own `/metrics`: each
//! crate writes the metrics of what it counts into an [`Exposition`], so a
//! metric is defined beside the counters it reads.

use std::fmt::Write;

/// Text format 0.0.4 being written for one scrape of `/metrics`.
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    /// Writes one metric family with one or more samples.
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            self.0.push_str(name);
            if !labels.is_empty() {
                self.0.push('{');
                for (i, (k, lv)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.0.push(',');
                    }
                    let esc = lv.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    let _ = write!(self.0, "{k}=\"{esc}\"");
                }
                self.0.push('}');
            }
            let _ = writeln!(self.0, " {}", format_value(*v));
        }
    }

    pub fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.family(name, "gauge", help, &[(&[], v)]);
    }

    pub fn counter(&mut self, name: &str, help: &str, v: f64) {
        self.family(name, "counter", help, &[(&[], v)]);
    }

    /// The text written so far.
    pub fn into_text(self) -> String {
        self.0
    }
}

pub use pharos_model::format_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_with_escaped_labels_and_special_values() {
        let mut e = Exposition::default();
        e.counter("a_total", "A.", 3.0);
        e.family("b", "gauge", "B.", &[(&[("k", "x\"y\n")], f64::INFINITY), (&[("k", "z")], f64::NAN)]);
        assert_eq!(
            e.into_text(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
             # HELP b B.\n# TYPE b gauge\nb{k=\"x\\\"y\\n\"} +Inf\nb{k=\"z\"} NaN\n"
        );
    }
}
