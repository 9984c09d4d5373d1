//! `match[]` parameters: a PromQL series selector into matcher sets.

use pharos_model::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Expr, parse};

/// Parses a series selector such as `up{job=~"a|b"}` into matcher sets (one
/// per `or` alternative). Errors name the selector and what is wrong.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = parse(s).map_err(|e| format!("invalid series selector {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("invalid series selector {s:?}: not a plain selector"));
    };
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, String> {
        let mut out = ms
            .iter()
            .map(|m| {
                let op = match m.op {
                    PMatchOp::Equal => MatchOp::Equal,
                    PMatchOp::NotEqual => MatchOp::NotEqual,
                    PMatchOp::Re(_) => MatchOp::Regex,
                    PMatchOp::NotRe(_) => MatchOp::NotRegex,
                };
                Matcher::new(op, &m.name, &m.value).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(name) = &vs.name
            && !out.iter().any(|m| m.name == METRIC_NAME)
        {
            out.push(Matcher::equal(METRIC_NAME, name));
        }
        if out.iter().all(|m| m.matches_empty()) {
            return Err(format!("invalid series selector {s:?}: match[] must contain at least one non-empty matcher"));
        }
        Ok(out)
    };
    let mut sets = vec![convert(&vs.matchers.matchers)?];
    for alt in &vs.matchers.or_matchers {
        sets.push(convert(alt)?);
    }
    sets.retain(|s| !s.is_empty());
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let s = parse_selector(r#"up{job=~"a|b", x!="1"}"#).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].len(), 3);
        assert!(parse_selector("sum(up)").is_err());
        assert!(parse_selector(r#"{x=""}"#).is_err());
        assert!(parse_selector("up{").unwrap_err().contains("up{"));
    }
}
