//! The evaluator's values and small helpers shared by its modules.
//!
//! Label sets are borrowed from the fetched data (`Cow::Borrowed`) until an
//! operation changes them, so selecting and filtering never copies labels.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashSet;

use pharos_model::{Labels, METRIC_NAME, Sample, Series};

use crate::Error;

pub(crate) type Lbl<'d> = Cow<'d, Labels>;

/// One element of an instant vector at the current evaluation time.
#[derive(Debug, Clone)]
pub(crate) struct Elem<'d> {
    pub labels: Lbl<'d>,
    pub v: f64,
}

/// One series of a range vector: the samples inside the window, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct RangeElem<'d> {
    pub labels: Lbl<'d>,
    pub samples: Cow<'d, [Sample]>,
}

#[derive(Debug, Clone)]
pub(crate) enum Val<'d> {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem<'d>>),
    Matrix(Vec<RangeElem<'d>>),
}

impl<'d> Val<'d> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }

    pub fn into_vector(self) -> Result<Vec<Elem<'d>>, Error> {
        match self {
            Val::Vector(v) => Ok(v),
            other => Err(Error::Execution(format!("expected instant vector, got {}", other.type_name()))),
        }
    }

    pub fn into_scalar(self) -> Result<f64, Error> {
        match self {
            Val::Scalar(v) => Ok(v),
            other => Err(Error::Execution(format!("expected scalar, got {}", other.type_name()))),
        }
    }

    pub fn into_string(self) -> Result<String, Error> {
        match self {
            Val::Str(s) => Ok(s),
            other => Err(Error::Execution(format!("expected string, got {}", other.type_name()))),
        }
    }

    pub fn into_matrix(self) -> Result<Vec<RangeElem<'d>>, Error> {
        match self {
            Val::Matrix(m) => Ok(m),
            other => Err(Error::Execution(format!("expected range vector, got {}", other.type_name()))),
        }
    }
}

/// The label set without `__name__` (borrowed unchanged when there is none).
pub(crate) fn drop_name(l: Lbl<'_>) -> Lbl<'_> {
    if l.get(METRIC_NAME).is_some() { Cow::Owned(l.without(&[METRIC_NAME])) } else { l }
}

/// The label sets without `__name__` of the fetched series, each made on first use
/// and kept for the whole query: `rate`, arithmetic and math functions drop the name
/// at every step of a range query, and then borrow the same label set each time
/// (no allocation, and the range result finds its series by address).
pub(crate) struct NameDropped {
    cells: Vec<Vec<OnceCell<Labels>>>,
}

impl NameDropped {
    /// Empty cells shaped like `data` (per selector, per series).
    pub fn new(data: &[Vec<Series>]) -> Self {
        Self { cells: data.iter().map(|v| v.iter().map(|_| OnceCell::new()).collect()).collect() }
    }

    /// `l` without `__name__`, if `l` is the label set of a series of `data` (the
    /// data this cache was made for).
    pub fn get<'d>(&'d self, data: &'d [Vec<Series>], l: &Labels) -> Option<&'d Labels> {
        let addr = l as *const Labels as usize;
        let size = std::mem::size_of::<Series>();
        for (sel, series) in data.iter().enumerate() {
            let Some(first) = series.first() else { continue };
            let base = &first.labels as *const Labels as usize;
            if addr < base || !(addr - base).is_multiple_of(size) {
                continue;
            }
            let i = (addr - base) / size;
            if series.get(i).is_some_and(|s| std::ptr::eq(&s.labels, l)) {
                let cell = self.cells.get(sel)?.get(i)?;
                return Some(cell.get_or_init(|| l.without(&[METRIC_NAME])));
            }
        }
        None
    }
}

/// Prometheus's check after functions and operators that rewrite labels.
pub(crate) fn check_unique(v: &[Elem<'_>]) -> Result<(), Error> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(v.len());
    for e in v {
        if !seen.insert(e.labels.as_ref()) {
            return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
        }
    }
    Ok(())
}

/// A label set with only the named labels.
pub(crate) fn keep_labels(l: &Labels, names: &[String]) -> Labels {
    Labels::new(l.iter().filter(|x| names.contains(&x.name)).cloned().collect())
}

/// Prometheus's label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Go's `math.Max`: +Inf wins, then NaN, then the larger (+0 beats -0).
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins, then NaN, then the smaller (-0 beats +0).
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

pub(crate) use pharos_model::format_value as format_float;

/// Kahan-Babuška summation step, as Prometheus uses for sums and means.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_min_max_nan_and_inf() {
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_min(1.0, f64::NAN).is_nan());
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(go_max(1.0, 2.0), 2.0);
    }

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn duplicates_are_reported() {
        let l = Labels::from_pairs(&[("a", "b")]);
        let v = vec![Elem { labels: Cow::Borrowed(&l), v: 1.0 }, Elem { labels: Cow::Owned(l.clone()), v: 2.0 }];
        assert!(check_unique(&v).is_err());
    }

    #[test]
    fn name_dropped_label_sets_are_made_once() {
        let data = vec![vec![
            Series::new(Labels::from_pairs(&[("__name__", "a"), ("x", "1")]), vec![]),
            Series::new(Labels::from_pairs(&[("__name__", "a"), ("x", "2")]), vec![]),
        ]];
        let names = NameDropped::new(&data);
        let first = names.get(&data, &data[0][1].labels).unwrap();
        assert_eq!(first.to_string(), r#"{x="2"}"#);
        assert!(std::ptr::eq(first, names.get(&data, &data[0][1].labels).unwrap()));
        let elsewhere = data[0][1].labels.clone();
        assert!(names.get(&data, &elsewhere).is_none());
    }

    #[test]
    fn label_names() {
        assert!(valid_label_name("a_1"));
        assert!(!valid_label_name("1a"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
    }
}
