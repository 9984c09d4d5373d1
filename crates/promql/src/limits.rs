//! Limits on what one query may ask for, checked before the work they bound.
//!
//! - **Query text** ([`check_text`]): its length, and an upper bound of the depth of
//!   its expression tree read from the tokens alone, both checked before the text
//!   reaches `promql_parser`. Parsing, lowering, planning, evaluation and dropping all
//!   recurse over the tree; with the depth bounded, the evaluation threads' stacks (see
//!   [`crate::worker`]) and the few small walks on the async side provably suffice.
//! - **Regular expressions** ([`compile_regex`]): the compiled program's size.
//! - **Samples** ([`always_yields`], [`grid_points`]): an evaluation that must produce
//!   at least one point at each of more steps than `max_samples` allows is refused
//!   before its first step; every other is counted step by step by the evaluator.
//!
//! Pure functions; the engine decides where they apply.

use regex::{Regex, RegexBuilder};

use crate::Error;
use crate::ast::{AggOp, Node};
use crate::position::{Tok, tokenize};

/// Refuses a query longer than `max_len` bytes or whose expression tree may be deeper
/// than `max_depth`, naming the limit.
pub(crate) fn check_text(query: &str, max_len: usize, max_depth: usize) -> Result<(), Error> {
    if query.len() > max_len {
        return Err(Error::TooLarge(format!(
            "query is {} bytes long, more than the limit of {max_len} bytes (max query length)",
            query.len()
        )));
    }
    let depth = depth_bound(query);
    if depth > max_depth {
        return Err(Error::TooLarge(format!(
            "query may nest {depth} levels deep, more than the limit of {max_depth} (max query depth)"
        )));
    }
    Ok(())
}

/// An upper bound of the depth of any expression tree the parser can build from
/// `query`, counting the leaf level.
///
/// Every inner node of the tree has a token of its own: a binary or unary operator
/// (`+`, `and`, ...; two-character operators count twice), the `[` of a range or
/// subquery, or the `(` of a parenthesis, call or aggregation. A path from the root
/// passes each operator of one parenthesised group at most once and then enters one
/// nested group, so the depth of a group is at most one plus its operators plus the
/// depth of its deepest nested group. Label matchers in `{...}` build no nodes and are
/// skipped.
pub(crate) fn depth_bound(query: &str) -> usize {
    let toks = tokenize(query);
    // Per open group: (operators in it, depth of its deepest nested group).
    let mut groups: Vec<(usize, usize)> = vec![(0, 0)];
    let close = |groups: &mut Vec<(usize, usize)>| {
        if let Some((ops, child)) = groups.pop() {
            let depth = 1 + ops + child;
            if let Some(parent) = groups.last_mut() {
                parent.1 = parent.1.max(depth);
            }
        }
    };
    let mut braces = 0usize;
    for (_, tok) in toks {
        if braces > 0 {
            match tok {
                Tok::Open('{') => braces += 1,
                Tok::Close('}') => braces -= 1,
                _ => {}
            }
            continue;
        }
        let top = groups.len() - 1;
        match tok {
            Tok::Open('{') => braces = 1,
            Tok::Open(c) => {
                if c == '[' {
                    groups[top].0 += 1;
                }
                groups.push((0, 0));
            }
            Tok::Close(c) if c != '}' && groups.len() > 1 => close(&mut groups),
            Tok::Op(_) => groups[top].0 += 1,
            Tok::Ident(w) if ["and", "or", "unless", "atan2"].iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                groups[top].0 += 1;
            }
            _ => {}
        }
    }
    while groups.len() > 1 {
        close(&mut groups);
    }
    let (ops, child) = groups[0];
    1 + ops + child
}

/// A fully anchored regex whose compiled program is at most `max_bytes`. Other
/// compile errors are the caller's to report (`Err(None)`), since their wording
/// depends on where the regex appears.
pub(crate) fn compile_regex(pattern: &str, max_bytes: usize) -> Result<Regex, Option<Error>> {
    RegexBuilder::new(&format!("^(?s:{pattern})$")).size_limit(max_bytes).build().map_err(|e| match e {
        regex::Error::CompiledTooBig(_) => Some(regex_too_big(pattern, max_bytes)),
        _ => None,
    })
}

fn regex_too_big(pattern: &str, max_bytes: usize) -> Error {
    const SHOWN: usize = 64;
    let shown: String = pattern.chars().take(SHOWN).collect();
    let more = if shown.len() < pattern.len() { "..." } else { "" };
    Error::TooLarge(format!(
        "regular expression \"{shown}{more}\" compiles to more than the limit of {max_bytes} bytes (max regex size)"
    ))
}

/// The number of grid times `first, first + step, ...` up to `last` (0 when
/// `first > last`), saturating; `step` is positive.
pub(crate) fn grid_points(first: i64, last: i64, step: i64) -> usize {
    if first > last || step <= 0 {
        return 0;
    }
    let n = (i128::from(last) - i128::from(first)) / i128::from(step) + 1;
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whether `n` yields at least one point at every evaluation time, whatever the
/// stored data: scalars, `vector(...)`, and what arithmetic with a scalar, unary
/// minus and the plain aggregations make of those. `false` is always safe.
pub(crate) fn always_yields(n: &Node) -> bool {
    match n {
        Node::Call { func, .. } if func == "vector" => true,
        Node::Neg(e) => always_yields(e),
        Node::Binary { op, lhs, rhs, return_bool, .. } if !op.is_set() && (!op.is_comparison() || *return_bool) => {
            (is_scalar(lhs) && always_yields(rhs)) || (is_scalar(rhs) && always_yields(lhs))
        }
        Node::Aggregate { op, expr, .. } => {
            matches!(
                op,
                AggOp::Sum
                    | AggOp::Avg
                    | AggOp::Count
                    | AggOp::Min
                    | AggOp::Max
                    | AggOp::Group
                    | AggOp::Stddev
                    | AggOp::Stdvar
            ) && always_yields(expr)
        }
        other => is_scalar(other),
    }
}

/// Whether `n` is a scalar expression (which has a value at every time).
fn is_scalar(n: &Node) -> bool {
    match n {
        Node::Number(_) => true,
        Node::Call { func, .. } => matches!(func.as_str(), "time" | "pi" | "scalar"),
        Node::Neg(e) => is_scalar(e),
        Node::Binary { op, lhs, rhs, .. } => !op.is_set() && is_scalar(lhs) && is_scalar(rhs),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{lower, parse};

    fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn depth_bound_holds_for_every_shape() {
        assert_eq!(depth_bound("up"), 1);
        assert_eq!(depth_bound("1 + 1 + 1"), 3);
        assert_eq!(depth_bound(&nested("(", "1", ")", 5)), 6);
        assert_eq!(depth_bound(&nested("-(", "1", ")", 5)), 11);
        assert_eq!(depth_bound(&nested("abs(", "up", ")", 5)), 6);
        assert_eq!(depth_bound(&vec!["up"; 100].join(" or ")), 100);
        // Matchers count nothing, ranges and subqueries one each.
        assert_eq!(depth_bound(r#"up{a=~"(((x)))", b!="-+-"}"#), 1);
        assert_eq!(depth_bound("max_over_time(rate(up[5m])[1h:1m])"), 6);
        // Unbalanced text still gets a bound (the parser rejects it later).
        assert_eq!(depth_bound(&"(".repeat(10)), 11);
        assert_eq!(depth_bound(&")".repeat(10)), 1);
        // Strings and comments hide their brackets.
        assert_eq!(depth_bound(r#"label_replace(up, "a", "((((", "b", "))))") # (((("#), 2);
    }

    /// The bound is at least the depth of the tree the parser and lowering build.
    #[test]
    fn depth_bound_is_at_least_the_tree_depth() {
        fn depth(n: &Node) -> usize {
            let mut deepest = 0;
            match n {
                Node::Number(_) | Node::Str(_) | Node::Vector(_) | Node::Matrix { .. } => {}
                Node::Subquery { expr, .. } | Node::Neg(expr) => deepest = depth(expr),
                Node::Binary { lhs, rhs, .. } => deepest = depth(lhs).max(depth(rhs)),
                Node::Aggregate { param, expr, .. } => {
                    deepest = depth(expr).max(param.as_deref().map_or(0, depth));
                }
                Node::Call { args, .. } => deepest = args.iter().map(depth).max().unwrap_or(0),
            }
            1 + deepest
        }
        for q in [
            "a + b * c ^ d - e / f",
            "-a - -b",
            "sum by (job) (rate(x[5m])) / on(job) group_left count(y)",
            "max_over_time((a + b)[10m:1m] offset 1m)",
            "topk(3, -(a > bool 1))",
            "label_replace(a or b unless c, \"x\", \"$1\", \"y\", \"(.*)\")",
            "a atan2 b and c",
        ] {
            let n = lower(&parse(q).unwrap(), 0, 0).unwrap();
            assert!(depth_bound(q) >= depth(&n), "{q}: bound {} < depth {}", depth_bound(q), depth(&n));
        }
    }

    #[test]
    fn text_limits_name_the_limit() {
        assert!(check_text("sum(up)", 100, 10).is_ok());
        let err = check_text(&"x".repeat(101), 100, 10).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)));
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("limit of 100 bytes (max query length)"), "{err}");
        let err = check_text(&nested("(", "1", ")", 10), 100, 10).unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("limit of 10 (max query depth)"), "{err}");
        assert!(check_text(&nested("(", "1", ")", 9), 100, 10).is_ok());
    }

    #[test]
    fn regex_size_is_limited() {
        assert!(compile_regex("a{100}", 1 << 20).is_ok());
        let Err(Some(err)) = compile_regex("a{10000}", 10_000) else { panic!("compiled over the limit") };
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("limit of 10000 bytes (max regex size)"), "{err}");
        assert!(matches!(compile_regex("(", 10_000), Err(None)));
    }

    #[test]
    fn grid_points_cannot_overflow() {
        assert_eq!(grid_points(0, 10, 5), 3);
        assert_eq!(grid_points(1, 0, 5), 0);
        assert_eq!(grid_points(i64::MIN, i64::MAX, 1), usize::MAX);
    }

    #[test]
    fn always_yields_only_when_certain() {
        let yields = |q: &str| always_yields(&lower(&parse(q).unwrap(), 0, 0).unwrap());
        for q in ["1", "vector(1)", "-vector(time())", "sum(vector(1) * 2)", "2 ^ vector(1) > bool 1", "pi() + 1"] {
            assert!(yields(q), "{q}");
        }
        for q in ["up", "vector(1) > 1", "vector(1) and vector(1)", "topk(1, vector(1))", "absent(up)"] {
            assert!(!yields(q), "{q}");
        }
    }
}
