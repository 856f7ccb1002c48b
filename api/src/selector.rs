//! Label selectors: `app=web,tier!=db,env in (prod,staging),env notin (dev),canary,!legacy`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value`.
    Eq(String, String),
    /// `key!=value`: matches when the label is absent too.
    NotEq(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`: matches when the label is absent too.
    NotIn(String, Vec<String>),
    /// `key`: the label exists.
    Exists(String),
    /// `!key`: the label does not exist.
    NotExists(String),
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// All of these must hold.
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses the textual form used by `-l` and `?labelSelector=`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: &str| Error::BadSelector { selector: s.to_string(), message: m.to_string() };
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(key(k.trim()).map_err(|m| bad(&m))?)
            } else if let Some((k, rest)) = split_word(term, " notin ") {
                Requirement::NotIn(key(k).map_err(|m| bad(&m))?, set(rest).map_err(|m| bad(&m))?)
            } else if let Some((k, rest)) = split_word(term, " in ") {
                Requirement::In(key(k).map_err(|m| bad(&m))?, set(rest).map_err(|m| bad(&m))?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(key(k).map_err(|m| bad(&m))?, v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Eq(key(k).map_err(|m| bad(&m))?, v.trim().to_string())
            } else {
                Requirement::Exists(key(term).map_err(|m| bad(&m))?)
            };
            reqs.push(req);
        }
        Ok(Selector { requirements: reqs })
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Eq(k, v) => format!("{k}={v}"),
                Requirement::NotEq(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::NotExists(k) => format!("!{k}"),
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_word<'a>(term: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    term.find(word).map(|i| (&term[..i], &term[i + word.len()..]))
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    crate::names::check_qualified_key(k)?;
    Ok(k.to_string())
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, got {rest:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn label() -> impl Strategy<Value = String> + Clone {
        "[a-z][a-z0-9]{0,6}"
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let set = proptest::collection::vec(label(), 1..4);
        prop_oneof![
            (label(), label()).prop_map(|(k, v)| Requirement::Eq(k, v)),
            (label(), label()).prop_map(|(k, v)| Requirement::NotEq(k, v)),
            (label(), set.clone()).prop_map(|(k, v)| Requirement::In(k, v)),
            (label(), set).prop_map(|(k, v)| Requirement::NotIn(k, v)),
            label().prop_map(Requirement::Exists),
            label().prop_map(Requirement::NotExists),
        ]
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_rejected_without_panicking(s in "\\PC{0,60}") {
            let _ = Selector::parse(&s);
        }

        #[test]
        fn printed_selectors_parse_back_to_themselves(reqs in proptest::collection::vec(requirement(), 0..5)) {
            let sel = Selector { requirements: reqs };
            prop_assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selector_operators_match_like_kubernetes() {
        let l = labels(&[("app", "web"), ("env", "prod")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(&l);
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(!m("app!=web"));
        assert!(m("tier!=db"));
        assert!(m("env in (prod, staging)"));
        assert!(!m("env notin (prod)"));
        assert!(m("tier notin (db)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!tier"));
        assert!(m("app=web,env in (prod),!tier"));
        assert!(m(""));
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        assert!(Selector::parse("env in prod").is_err());
        assert!(Selector::parse("Bad Key=1").is_err());
    }

    #[test]
    fn selector_round_trips_through_display() {
        let s = Selector::parse("a=b,c!=d,e in (x,y),f notin (z),g,!h").unwrap();
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }
}
