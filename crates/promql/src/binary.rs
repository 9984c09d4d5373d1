//! Binary operators: arithmetic, comparisons (with and without `bool`), set
//! operators, and vector matching with `on`/`ignoring`/`group_left`/`group_right`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use pharos_model::{Labels, METRIC_NAME};

use crate::Error;
use crate::ast::{BinOp, Card, VectorMatching};
use crate::value::{Elem, Lbl, Val, check_unique};

pub(crate) fn eval<'d>(
    op: BinOp,
    lhs: Val<'d>,
    rhs: Val<'d>,
    m: &VectorMatching,
    return_bool: bool,
    v3: bool,
    drop_name: &dyn Fn(Lbl<'d>) -> Lbl<'d>,
) -> Result<Val<'d>, Error> {
    let out = match (lhs, rhs) {
        (Val::Scalar(a), Val::Scalar(b)) => return Ok(Val::Scalar(scalar_binop(op, a, b))),
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, s, false, return_bool, v3, drop_name)?,
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, s, true, return_bool, v3, drop_name)?,
        (Val::Vector(l), Val::Vector(r)) => match op {
            BinOp::And => and(l, r, m),
            BinOp::Or => or(l, r, m),
            BinOp::Unless => unless(l, r, m),
            _ => vector_vector(op, l, r, m, return_bool, v3)?,
        },
        (l, r) => {
            return Err(Error::Execution(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            )));
        }
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// The value of `lhs op rhs` and whether a comparison keeps the element (its
/// value is then the left-hand side).
pub(crate) fn elem_binop(op: BinOp, lhs: f64, rhs: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (lhs + rhs, true),
        BinOp::Sub => (lhs - rhs, true),
        BinOp::Mul => (lhs * rhs, true),
        BinOp::Div => (lhs / rhs, true),
        BinOp::Mod => (lhs % rhs, true),
        BinOp::Pow => (lhs.powf(rhs), true),
        BinOp::Atan2 => (lhs.atan2(rhs), true),
        BinOp::Eql => (lhs, lhs == rhs),
        BinOp::Neq => (lhs, lhs != rhs),
        BinOp::Gtr => (lhs, lhs > rhs),
        BinOp::Lss => (lhs, lhs < rhs),
        BinOp::Gte => (lhs, lhs >= rhs),
        BinOp::Lte => (lhs, lhs <= rhs),
        // Set operators never reach here (the parser rejects them on scalars).
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

fn scalar_binop(op: BinOp, a: f64, b: f64) -> f64 {
    let (v, keep) = elem_binop(op, a, b);
    if op.is_comparison() { if keep { 1.0 } else { 0.0 } } else { v }
}

fn vector_scalar<'d>(
    op: BinOp,
    v: Vec<Elem<'d>>,
    s: f64,
    swap: bool,
    return_bool: bool,
    v3: bool,
    drop_name: &dyn Fn(Lbl<'d>) -> Lbl<'d>,
) -> Result<Vec<Elem<'d>>, Error> {
    if op.is_set() {
        return Err(Error::Execution(format!("set operator not allowed in binary scalar expression: {op:?}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let (lv, rv) = if swap { (s, e.v) } else { (e.v, s) };
        let (mut value, mut keep) = elem_binop(op, lv, rv);
        // A comparison keeps the vector element's value even when it is on the right.
        if op.is_comparison() && swap {
            value = rv;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            let labels = if op.drops_metric_name_in(v3) || return_bool { drop_name(e.labels) } else { e.labels };
            out.push(Elem { labels, v: value });
        }
    }
    Ok(out)
}

/// The matching key of a label set.
fn signature(l: &Labels, m: &VectorMatching) -> Vec<u8> {
    let mut buf = Vec::new();
    for x in l.iter() {
        let listed = m.labels.contains(&x.name);
        let include = if m.on { listed } else { !listed && x.name != METRIC_NAME };
        if include {
            buf.extend_from_slice(x.name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(x.value.as_bytes());
            buf.push(0xff);
        }
    }
    buf
}

/// Prometheus's rendering of a label set: `{__name__="x", a="b"}`.
pub(crate) fn prom_string(l: &Labels) -> String {
    let parts: Vec<String> = l.iter().map(|x| format!("{}={:?}", x.name, x.value)).collect();
    format!("{{{}}}", parts.join(", "))
}

fn match_labels(l: &Labels, m: &VectorMatching) -> Labels {
    Labels::new(
        l.iter()
            .filter(|x| {
                let listed = m.labels.contains(&x.name);
                if m.on { listed } else { !listed && x.name != METRIC_NAME }
            })
            .cloned()
            .collect(),
    )
}

fn vector_vector<'d>(
    op: BinOp,
    lhs: Vec<Elem<'d>>,
    rhs: Vec<Elem<'d>>,
    m: &VectorMatching,
    return_bool: bool,
    v3: bool,
) -> Result<Vec<Elem<'d>>, Error> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = m.card == Card::OneToMany;
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };

    // The "one" side must be unique per signature.
    let mut one_sigs: HashMap<Vec<u8>, usize> = HashMap::with_capacity(one.len());
    for (i, e) in one.iter().enumerate() {
        let sig = signature(&e.labels, m);
        if let Some(&prev) = one_sigs.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            // Prometheus 3 names the series seen first first.
            let (a, b) = if v3 { (&one[prev].labels, &e.labels) } else { (&e.labels, &one[prev].labels) };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                prom_string(&match_labels(&e.labels, m)),
                prom_string(a),
                prom_string(b),
            )));
        }
        one_sigs.insert(sig, i);
    }

    let mut matched: HashMap<Vec<u8>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = signature(&ls.labels, m);
        let Some(&ri) = one_sigs.get(&sig) else { continue };
        let rs = &one[ri];
        let mut metric = result_metric(&ls.labels, &rs.labels, op, m, v3);
        if return_bool {
            metric = metric.without(&[METRIC_NAME]);
        }
        // Prometheus 3 checks the matching before a comparison filters the pair out.
        if v3 {
            check_match(&mut matched, sig.clone(), &metric, m.card)?;
        }
        let (vl, vr) = if one_to_many { (rs.v, ls.v) } else { (ls.v, rs.v) };
        let (mut value, keep) = elem_binop(op, vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        if !v3 {
            check_match(&mut matched, sig, &metric, m.card)?;
        }
        out.push(Elem { labels: Cow::Owned(metric), v: value });
    }
    Ok(out)
}

/// Fails when a signature matches twice in one-to-one matching, or when the
/// grouping labels do not make a many-to-one result unique.
fn check_match(
    matched: &mut HashMap<Vec<u8>, HashSet<Labels>>,
    sig: Vec<u8>,
    metric: &Labels,
    card: Card,
) -> Result<(), Error> {
    match matched.get_mut(&sig) {
        Some(seen) => {
            if card == Card::OneToOne {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
            if !seen.insert(metric.clone()) {
                return Err(Error::Execution(
                    "multiple matches for labels: grouping labels must ensure unique results".into(),
                ));
            }
        }
        None => {
            let mut seen = HashSet::new();
            if card != Card::OneToOne {
                seen.insert(metric.clone());
            }
            matched.insert(sig, seen);
        }
    }
    Ok(())
}

fn result_metric(many: &Labels, one: &Labels, op: BinOp, m: &VectorMatching, v3: bool) -> Labels {
    let mut l = many.clone();
    if op.drops_metric_name_in(v3) {
        l.set(METRIC_NAME, "");
    }
    match m.card {
        Card::OneToOne => {
            if m.on {
                l = Labels::new(l.into_vec().into_iter().filter(|x| m.labels.contains(&x.name)).collect());
            } else {
                let names: Vec<&str> = m.labels.iter().map(String::as_str).collect();
                l = l.without(&names);
            }
        }
        Card::ManyToOne | Card::OneToMany => {
            for name in &m.include {
                l.set(name, one.get(name).unwrap_or(""));
            }
        }
        Card::ManyToMany => {}
    }
    l
}

fn sigs(v: &[Elem<'_>], m: &VectorMatching) -> HashSet<Vec<u8>> {
    v.iter().map(|e| signature(&e.labels, m)).collect()
}

fn and<'d>(lhs: Vec<Elem<'d>>, rhs: Vec<Elem<'d>>, m: &VectorMatching) -> Vec<Elem<'d>> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right = sigs(&rhs, m);
    lhs.into_iter().filter(|e| right.contains(&signature(&e.labels, m))).collect()
}

fn or<'d>(mut lhs: Vec<Elem<'d>>, rhs: Vec<Elem<'d>>, m: &VectorMatching) -> Vec<Elem<'d>> {
    if lhs.is_empty() {
        return rhs;
    }
    let left = sigs(&lhs, m);
    lhs.extend(rhs.into_iter().filter(|e| !left.contains(&signature(&e.labels, m))));
    lhs
}

fn unless<'d>(lhs: Vec<Elem<'d>>, rhs: Vec<Elem<'d>>, m: &VectorMatching) -> Vec<Elem<'d>> {
    if rhs.is_empty() {
        return lhs;
    }
    let right = sigs(&rhs, m);
    lhs.into_iter().filter(|e| !right.contains(&signature(&e.labels, m))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::drop_name;

    fn elem(pairs: &[(&str, &str)], v: f64) -> Elem<'static> {
        Elem { labels: Cow::Owned(Labels::from_pairs(pairs)), v }
    }

    fn matching(card: Card, on: bool, labels: &[&str], include: &[&str]) -> VectorMatching {
        VectorMatching {
            card,
            on,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            include: include.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_to_one_drops_name_and_matches_ignoring_name() {
        let l = vec![elem(&[("__name__", "a"), ("x", "1")], 6.0)];
        let r = vec![elem(&[("__name__", "b"), ("x", "1")], 2.0)];
        let Val::Vector(out) = eval(
            BinOp::Div,
            Val::Vector(l),
            Val::Vector(r),
            &matching(Card::OneToOne, false, &[], &[]),
            false,
            false,
            &drop_name,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].v, 3.0);
        assert_eq!(out[0].labels.to_string(), r#"{x="1"}"#);
    }

    #[test]
    fn comparison_filters_and_bool_returns_zero_one() {
        let v = vec![elem(&[("__name__", "a")], 1.0), elem(&[("__name__", "b")], 5.0)];
        let Val::Vector(out) = eval(
            BinOp::Gtr,
            Val::Vector(v.clone()),
            Val::Scalar(2.0),
            &matching(Card::OneToOne, false, &[], &[]),
            false,
            false,
            &drop_name,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].labels.metric_name(), Some("b"));
        assert!(
            eval(
                BinOp::Gtr,
                Val::Vector(v),
                Val::Scalar(2.0),
                &matching(Card::OneToOne, false, &[], &[]),
                true,
                false,
                &drop_name
            )
            .is_err(),
            "bool drops names, making the two results collide"
        );
    }

    #[test]
    fn group_left_copies_labels_from_one_side() {
        let l = vec![elem(&[("x", "1"), ("y", "a")], 1.0), elem(&[("x", "1"), ("y", "b")], 2.0)];
        let r = vec![elem(&[("x", "1"), ("z", "info")], 10.0)];
        let m = matching(Card::ManyToOne, true, &["x"], &["z"]);
        let Val::Vector(out) = eval(BinOp::Mul, Val::Vector(l), Val::Vector(r), &m, false, false, &drop_name).unwrap()
        else {
            panic!()
        };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels.get("z"), Some("info"));
        assert_eq!(out[1].v, 20.0);
    }

    #[test]
    fn duplicate_one_side_is_an_error() {
        let l = vec![elem(&[("x", "1")], 1.0)];
        let r = vec![elem(&[("x", "1"), ("y", "a")], 1.0), elem(&[("x", "1"), ("y", "b")], 1.0)];
        let m = matching(Card::OneToOne, true, &["x"], &[]);
        let err = eval(BinOp::Add, Val::Vector(l), Val::Vector(r), &m, false, false, &drop_name).unwrap_err();
        assert!(err.to_string().contains("found duplicate series"), "{err}");
    }

    #[test]
    fn set_operators() {
        let m = matching(Card::ManyToMany, false, &[], &[]);
        let l = vec![elem(&[("x", "1")], 1.0), elem(&[("x", "2")], 2.0)];
        let r = vec![elem(&[("x", "2")], 20.0), elem(&[("x", "3")], 30.0)];
        let vals = |v: Val<'_>| match v {
            Val::Vector(v) => v.iter().map(|e| e.v).collect::<Vec<_>>(),
            _ => panic!(),
        };
        assert_eq!(
            vals(
                eval(BinOp::And, Val::Vector(l.clone()), Val::Vector(r.clone()), &m, false, false, &drop_name).unwrap()
            ),
            vec![2.0]
        );
        assert_eq!(
            vals(
                eval(BinOp::Or, Val::Vector(l.clone()), Val::Vector(r.clone()), &m, false, false, &drop_name).unwrap()
            ),
            vec![1.0, 2.0, 30.0]
        );
        assert_eq!(
            vals(eval(BinOp::Unless, Val::Vector(l), Val::Vector(r), &m, false, false, &drop_name).unwrap()),
            vec![1.0]
        );
    }
}
