//! Parsing and lowering: the parser's AST becomes a small internal tree whose
//! selectors carry ready-to-use matchers, millisecond offsets and resolved `@` times.

use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pharos_model::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self as pp, AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality};

use crate::Error;
use crate::position::Lead;

/// The resolution of a subquery without an explicit step (`x[5m:]`): Prometheus's
/// default global evaluation interval.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// An instant or range vector selector.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    /// Index into the fetched data.
    pub id: usize,
    /// Alternative matcher sets (more than one only with `{a="1" or b="2"}`); a
    /// series is selected when it matches every matcher of any set.
    pub matcher_sets: Vec<Vec<Matcher>>,
    pub offset: i64,
    /// `@` time in ms, already resolved for `start()`/`end()`.
    pub at: Option<i64>,
}

impl Selector {
    /// The time this selector reads at when evaluated at `t`.
    pub fn ref_time(&self, t: i64) -> i64 {
        self.at.unwrap_or(t).saturating_sub(self.offset)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte)
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Arithmetic drops the metric name; comparisons without `bool` and (in 2.42)
    /// `atan2` keep it.
    pub fn drops_metric_name(self) -> bool {
        matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow)
    }

    /// As [`BinOp::drops_metric_name`]; Prometheus 3 drops it for `atan2` too.
    pub fn drops_metric_name_in(self, v3: bool) -> bool {
        self.drops_metric_name() || (v3 && self == BinOp::Atan2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// `on`/`ignoring` and `group_left`/`group_right` of a binary operation.
#[derive(Debug, Clone)]
pub(crate) struct VectorMatching {
    pub card: Card,
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    pub on: bool,
    pub labels: Vec<String>,
    /// Labels of `group_left(...)`/`group_right(...)` copied from the "one" side.
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
}

#[derive(Debug, Clone)]
pub(crate) enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Number(f64),
    Str(String),
    Vector(Selector),
    Matrix {
        sel: Selector,
        range: i64,
    },
    Subquery {
        expr: Box<Node>,
        range: i64,
        step: i64,
        offset: i64,
        at: Option<i64>,
    },
    Neg(Box<Node>),
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        matching: VectorMatching,
        return_bool: bool,
    },
    /// `inner`: the aggregated expression as PromQL text, for pushing the aggregation
    /// down to shards ([`crate::pushdown`]).
    Aggregate {
        op: AggOp,
        param: Option<Box<Node>>,
        expr: Box<Node>,
        grouping: Grouping,
        inner: String,
        /// Node ids of the aggregation and its parameter (for annotations).
        id: usize,
        param_id: usize,
    },
    /// `id`/`arg_ids`: node ids of the call and its arguments, for annotations.
    Call {
        func: String,
        args: Vec<Node>,
        id: usize,
        arg_ids: Vec<usize>,
    },
}

static REGISTER: Once = Once::new();

/// Parses a query. `holt_winters` (renamed upstream after 2.42) is registered with the parser.
pub(crate) fn parse(query: &str) -> Result<Expr, Error> {
    REGISTER.call_once(|| {
        // Fails only if the parser ever grows its own holt_winters, which is fine.
        let _ = pp::register_extra_functions(vec![pp::Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
    pp::parse(query).map_err(Error::Parse)
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// Range queries must produce scalars or instant vectors.
pub(crate) fn check_range_query_type(expr: &Expr) -> Result<(), Error> {
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => Ok(()),
        t => Err(Error::Parse(format!(
            "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
            type_name(t)
        ))),
    }
}

fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => -dur_ms(&e.duration()),
    }
}

struct Lowerer {
    start: i64,
    end: i64,
    /// The largest compiled regex of a matcher, in bytes.
    max_regex_bytes: usize,
    next_id: usize,
    /// Byte offset of every node so far, by node id (pre-order).
    positions: Vec<usize>,
    /// Leading tokens of the query text not consumed yet (see [`crate::position`]);
    /// emptied at the first mismatch.
    leads: std::vec::IntoIter<(usize, Lead)>,
}

impl Lowerer {
    fn at(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(time_ms(t)),
        }
    }

    fn selector(&mut self, vs: &pp::VectorSelector) -> Result<Selector, Error> {
        let mut sets: Vec<&[PMatcher]> = Vec::new();
        if vs.matchers.or_matchers.is_empty() {
            sets.push(&vs.matchers.matchers);
        } else {
            // The parser moves plain matchers into the first `or` group.
            for g in &vs.matchers.or_matchers {
                sets.push(g);
            }
        }
        let mut matcher_sets = Vec::with_capacity(sets.len());
        for set in sets {
            let mut ms = Vec::with_capacity(set.len() + 1);
            if let Some(name) = &vs.name {
                ms.push(Matcher::equal(METRIC_NAME, name));
            }
            for m in set {
                ms.push(convert_matcher(m, self.max_regex_bytes)?);
            }
            matcher_sets.push(ms);
        }
        let id = self.next_id;
        self.next_id += 1;
        Ok(Selector { id, matcher_sets, offset: offset_ms(&vs.offset), at: self.at(&vs.at) })
    }

    /// The offset of the next leading token if it is of kind `kind`.
    fn take(&mut self, kind: Lead) -> usize {
        // Parentheses the parser dropped (around aggregation parameters) have no node.
        while kind != Lead::Paren && self.leads.as_slice().first().is_some_and(|l| l.1 == Lead::Paren) {
            self.leads.next();
        }
        match self.leads.as_slice().first() {
            Some(&(pos, k)) if k == kind => {
                self.leads.next();
                pos
            }
            _ => {
                self.leads = Vec::new().into_iter();
                usize::MAX
            }
        }
    }

    /// Lowers `e`, numbering it and its children in pre-order (parentheses count);
    /// returns the node and its id.
    fn lower(&mut self, e: &Expr) -> Result<(Node, usize), Error> {
        if let Expr::Paren(p) = e {
            // Parentheses are no node of the tree, but have an id of their own (the
            // position of `(`) for annotations about the parenthesised argument.
            let id = self.positions.len();
            self.positions.push(usize::MAX);
            self.positions[id] = self.take(Lead::Paren);
            let (n, _) = self.lower(&p.expr)?;
            return Ok((n, id));
        }
        let id = self.positions.len();
        self.positions.push(usize::MAX);
        let (node, pos) = self.lower_node(e)?;
        self.positions[id] = pos;
        Ok((node, id))
    }

    fn lower_node(&mut self, e: &Expr) -> Result<(Node, usize), Error> {
        Ok(match e {
            Expr::Paren(_) => {
                let (n, id) = self.lower(e)?;
                (n, self.positions[id])
            }
            Expr::NumberLiteral(n) => {
                // The parser folds unary minus into number literals.
                let mut pos = None;
                while self.leads.as_slice().first().is_some_and(|l| l.1 == Lead::Neg) {
                    pos = pos.or(Some(self.take(Lead::Neg)));
                }
                let p = self.take(Lead::Number);
                (Node::Number(n.val), pos.unwrap_or(p))
            }
            Expr::StringLiteral(s) => (Node::Str(s.val.clone()), self.take(Lead::Str)),
            Expr::VectorSelector(vs) => {
                let pos = self.take(Lead::Selector);
                (Node::Vector(self.selector(vs)?), pos)
            }
            Expr::MatrixSelector(ms) => {
                let pos = self.take(Lead::Selector);
                (Node::Matrix { sel: self.selector(&ms.vs)?, range: dur_ms(&ms.range) }, pos)
            }
            Expr::Subquery(sq) => {
                let step = sq.step.as_ref().map(dur_ms).unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
                if step <= 0 {
                    return Err(Error::Parse("subquery step must be positive".into()));
                }
                let (inner, inner_id) = self.lower(&sq.expr)?;
                let node = Node::Subquery {
                    expr: Box::new(inner),
                    range: dur_ms(&sq.range),
                    step,
                    offset: offset_ms(&sq.offset),
                    at: self.at(&sq.at),
                };
                (node, self.positions[inner_id])
            }
            Expr::Unary(u) => {
                let pos = self.take(Lead::Neg);
                (Node::Neg(Box::new(self.lower(&u.expr)?.0)), pos)
            }
            Expr::Binary(b) => {
                let op = bin_op(&b.op.to_string())?;
                let (matching, return_bool) = match &b.modifier {
                    None => (
                        VectorMatching {
                            card: if op.is_set() { Card::ManyToMany } else { Card::OneToOne },
                            on: false,
                            labels: vec![],
                            include: vec![],
                        },
                        false,
                    ),
                    Some(m) => {
                        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                            return Err(Error::Parse("fill modifiers are not supported".into()));
                        }
                        let (card, include) = match &m.card {
                            VectorMatchCardinality::OneToOne => (Card::OneToOne, vec![]),
                            VectorMatchCardinality::ManyToMany => (Card::ManyToMany, vec![]),
                            VectorMatchCardinality::ManyToOne(l) => (Card::ManyToOne, l.labels.clone()),
                            VectorMatchCardinality::OneToMany(l) => (Card::OneToMany, l.labels.clone()),
                        };
                        let card = if op.is_set() { Card::ManyToMany } else { card };
                        let (on, labels) = match &m.matching {
                            None => (false, vec![]),
                            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                        };
                        (VectorMatching { card, on, labels, include }, m.return_bool)
                    }
                };
                let (lhs, lhs_id) = self.lower(&b.lhs)?;
                let (rhs, _) = self.lower(&b.rhs)?;
                let node = Node::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), matching, return_bool };
                (node, self.positions[lhs_id])
            }
            Expr::Aggregate(a) => {
                let pos = self.take(Lead::Aggregate);
                let id = self.positions.len() - 1;
                let op = agg_op(&a.op.to_string())?;
                let grouping = match &a.modifier {
                    None => Grouping::By(vec![]),
                    Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
                    Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
                };
                let (param, param_id) = match &a.param {
                    Some(p) => {
                        let (n, id) = self.lower(p)?;
                        (Some(Box::new(n)), id)
                    }
                    None => (None, 0),
                };
                let inner = a.expr.to_string();
                let expr = Box::new(self.lower(&a.expr)?.0);
                (Node::Aggregate { op, param, expr, grouping, inner, id, param_id }, pos)
            }
            Expr::Call(c) => {
                let pos = self.take(Lead::Call);
                let id = self.positions.len() - 1;
                let mut args = Vec::with_capacity(c.args.args.len());
                let mut arg_ids = Vec::with_capacity(c.args.args.len());
                for a in &c.args.args {
                    let (n, aid) = self.lower(a)?;
                    args.push(n);
                    arg_ids.push(aid);
                }
                (Node::Call { func: c.func.name.to_string(), args, id, arg_ids }, pos)
            }
            Expr::Extension(_) => {
                return Err(Error::Parse("extension expressions are not supported".into()));
            }
        })
    }
}

/// Lowers a parsed expression for a query spanning `start..=end` (ms).
#[cfg(test)]
pub(crate) fn lower(e: &Expr, start: i64, end: i64) -> Result<Node, Error> {
    let max_regex_bytes = crate::EngineOptions::default().max_regex_bytes;
    lower_with_positions(e, "", start, end, max_regex_bytes).map(|(n, _)| n)
}

/// [`lower`], also returning the byte offset in `query` (the text `e` was parsed
/// from) of every node, by node id (`usize::MAX` where unknown). Regexes of matchers
/// may compile to at most `max_regex_bytes`.
pub(crate) fn lower_with_positions(
    e: &Expr,
    query: &str,
    start: i64,
    end: i64,
    max_regex_bytes: usize,
) -> Result<(Node, Vec<usize>), Error> {
    let leads = crate::position::leads(query).into_iter();
    let mut l = Lowerer { start, end, max_regex_bytes, next_id: 0, positions: Vec::new(), leads };
    let (root, _) = l.lower(e)?;
    Ok((root, l.positions))
}

fn bin_op(s: &str) -> Result<BinOp, Error> {
    Ok(match s {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "^" => BinOp::Pow,
        "atan2" => BinOp::Atan2,
        "==" => BinOp::Eql,
        "!=" => BinOp::Neq,
        ">" => BinOp::Gtr,
        "<" => BinOp::Lss,
        ">=" => BinOp::Gte,
        "<=" => BinOp::Lte,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "unless" => BinOp::Unless,
        other => return Err(Error::Parse(format!("unsupported binary operator {other:?}"))),
    })
}

fn agg_op(s: &str) -> Result<AggOp, Error> {
    Ok(match s {
        "sum" => AggOp::Sum,
        "avg" => AggOp::Avg,
        "count" => AggOp::Count,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "group" => AggOp::Group,
        "stddev" => AggOp::Stddev,
        "stdvar" => AggOp::Stdvar,
        "topk" => AggOp::Topk,
        "bottomk" => AggOp::Bottomk,
        "count_values" => AggOp::CountValues,
        "quantile" => AggOp::Quantile,
        "limitk" => AggOp::Limitk,
        "limit_ratio" => AggOp::LimitRatio,
        other => return Err(Error::Parse(format!("unsupported aggregation {other:?}"))),
    })
}

fn convert_matcher(m: &PMatcher, max_regex_bytes: usize) -> Result<Matcher, Error> {
    let op = match m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    let is_regex = matches!(op, MatchOp::Regex | MatchOp::NotRegex);
    // Refuses a regex over the size limit; any other error is the matcher's to report.
    let check_size = |pattern: &str| match is_regex.then(|| crate::limits::compile_regex(pattern, max_regex_bytes)) {
        Some(Err(Some(too_big))) => Err(too_big),
        _ => Ok(()),
    };
    check_size(&m.value)?;
    match Matcher::new(op, &m.name, &m.value) {
        Ok(x) => Ok(x),
        // Go accepts a literal `{` where Rust wants a repetition; retry escaped.
        Err(e) => {
            let escaped = escape_literal_braces(&m.value);
            check_size(&escaped)?;
            Matcher::new(op, &m.name, &escaped).map_err(|_| Error::Parse(e.to_string()))
        }
    }
}

/// Escapes every `{` that does not start a valid repetition like `{2}` or `{1,3}`.
pub(crate) fn escape_literal_braces(re: &str) -> String {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        if c == '{' {
            let rest: String = chars[i + 1..].iter().collect();
            let is_repeat = rest.find('}').is_some_and(|end| {
                let body = &rest[..end];
                let mut parts = body.splitn(2, ',');
                let first = parts.next().unwrap_or("");
                let second = parts.next();
                !first.is_empty()
                    && first.chars().all(|c| c.is_ascii_digit())
                    && second.is_none_or(|s| s.chars().all(|c| c.is_ascii_digit()))
            });
            if !is_repeat {
                out.push('\\');
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
impl Node {
    /// Visits every node, parents first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Node)) {
        f(self);
        match self {
            Node::Number(_) | Node::Str(_) | Node::Vector(_) | Node::Matrix { .. } => {}
            Node::Subquery { expr, .. } | Node::Neg(expr) => expr.walk(f),
            Node::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            Node::Aggregate { param, expr, .. } => {
                if let Some(p) = param {
                    p.walk(f);
                }
                expr.walk(f);
            }
            Node::Call { args, .. } => args.iter().for_each(|a| a.walk(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower_str(q: &str) -> Node {
        lower(&parse(q).unwrap(), 1_000, 2_000).unwrap()
    }

    #[test]
    fn selector_gets_name_matcher_offset_and_at() {
        let Node::Vector(s) = lower_str(r#"up{job=~"a.*"} @ end() offset 5s"#) else { panic!() };
        assert_eq!(s.at, Some(2_000));
        assert_eq!(s.offset, 5_000);
        assert_eq!(s.matcher_sets.len(), 1);
        assert_eq!(s.matcher_sets[0][0].to_string(), r#"__name__="up""#);
        assert_eq!(s.matcher_sets[0][1].op, MatchOp::Regex);
        assert_eq!(s.ref_time(123), -3_000);
    }

    #[test]
    fn negative_at_and_offset() {
        let Node::Vector(s) = lower_str("up @ -10 offset -1m") else { panic!() };
        assert_eq!(s.at, Some(-10_000));
        assert_eq!(s.offset, -60_000);
    }

    #[test]
    fn selectors_are_numbered() {
        let n = lower_str("a + rate(b[5m]) + sum_over_time(c[1m:10s])");
        let mut ids = vec![];
        n.walk(&mut |n| match n {
            Node::Vector(s) | Node::Matrix { sel: s, .. } => ids.push(s.id),
            _ => {}
        });
        assert_eq!(ids, vec![0, 1, 2]);
    }

    #[test]
    fn holt_winters_parses() {
        assert!(parse("holt_winters(x[5m], 0.1, 0.2)").is_ok());
    }

    #[test]
    fn go_style_literal_braces() {
        assert_eq!(escape_literal_braces("a{b}c"), r"a\{b}c");
        assert_eq!(escape_literal_braces("a{2}"), "a{2}");
        assert_eq!(escape_literal_braces("a{1,3}"), "a{1,3}");
    }
}
