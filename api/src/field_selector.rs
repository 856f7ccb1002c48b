//! Field selectors: `spec.nodeName=a,status.phase!=RUNNING`, as Kubernetes has them.
//!
//! A field is a dotted path into the object (`metadata.name`, `spec.nodeName`,
//! `status.phase`, any other path to a scalar). Its value compares as text: a string as
//! itself, a number or boolean as written in JSON, and an absent or null field as the
//! empty string, so `spec.nodeName=` selects objects not bound to a node. Objects and
//! arrays equal nothing.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::error::{Error, Result};

/// How a requirement compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Eq,
    /// `field!=value`.
    NotEq,
}

/// One requirement of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field's path, split at the dots.
    pub path: Vec<String>,
    /// The comparison.
    pub op: FieldOp,
    /// The value compared with.
    pub value: String,
}

impl FieldRequirement {
    fn holds(&self, actual: &FieldValue) -> bool {
        let equal = match actual {
            FieldValue::Scalar(s) => *s == self.value,
            FieldValue::Absent => self.value.is_empty(),
            FieldValue::Composite => false,
        };
        (self.op == FieldOp::Eq) == equal
    }
}

/// A conjunction of field requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// All of these must hold.
    pub requirements: Vec<FieldRequirement>,
}

/// What a field holds, as far as a selector cares.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FieldValue {
    Absent,
    Scalar(String),
    Composite,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses the textual form used by `--field-selector` and `?fieldSelector=`.
    ///
    /// # Errors
    /// [`Error::BadFieldSelector`] naming the offending term.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: String| Error::BadFieldSelector { selector: s.to_string(), message: m };
        let mut requirements = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, op, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, FieldOp::NotEq, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, FieldOp::Eq, v)
            } else {
                return Err(bad(format!("{term:?} is not field=value or field!=value")));
            };
            let field = field.trim();
            let path: Vec<String> = field.split('.').map(str::to_string).collect();
            let segment_ok =
                |p: &String| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !path.iter().all(segment_ok) {
                return Err(bad(format!(
                    "{field:?} is not a field path: use dotted names such as metadata.name or spec.nodeName"
                )));
            }
            requirements.push(FieldRequirement { path, op, value: value.trim().to_string() });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let mut v = Some(object);
            for seg in &r.path {
                v = v.and_then(|x| x.get(seg));
            }
            let actual = match v {
                None | Some(Value::Null) => FieldValue::Absent,
                Some(Value::String(s)) => FieldValue::Scalar(s.clone()),
                Some(Value::Bool(b)) => FieldValue::Scalar(b.to_string()),
                Some(Value::Number(n)) => FieldValue::Scalar(n.to_string()),
                Some(_) => FieldValue::Composite,
            };
            r.holds(&actual)
        })
    }

    /// Whether the object serialized as `json` is selected. Reads only the selected
    /// fields: the rest of the document is skipped without being built, so filtering
    /// a watch costs little more than scanning the bytes. A document that is not a
    /// JSON object matches nothing.
    pub fn matches_json(&self, json: &[u8]) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut found = vec![FieldValue::Absent; self.requirements.len()];
        let paths: Vec<(&[String], usize)> =
            self.requirements.iter().enumerate().map(|(i, r)| (r.path.as_slice(), i)).collect();
        let mut de = serde_json::Deserializer::from_slice(json);
        if (Extract { paths: &paths, found: &mut found }).deserialize(&mut de).is_err() {
            return false;
        }
        self.requirements.iter().zip(&found).all(|(r, v)| r.holds(v))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.op == FieldOp::Eq { "=" } else { "!=" };
                format!("{}{op}{}", r.path.join("."), r.value)
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Walks one level of a document, descending only into keys that lead to a wanted
/// path; `paths` holds the rest of each wanted path below this level and where its
/// value goes.
struct Extract<'a, 'b> {
    paths: &'a [(&'a [String], usize)],
    found: &'b mut [FieldValue],
}

impl<'de> DeserializeSeed<'de> for Extract<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Extract<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let ended: Vec<usize> = self.paths.iter().filter(|(p, _)| p.is_empty()).map(|(_, i)| *i).collect();
        for i in ended {
            self.found[i] = FieldValue::Composite;
        }
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let below: Vec<(&[String], usize)> = self
                .paths
                .iter()
                .filter(|(p, _)| p.first().is_some_and(|s| *s == key))
                .map(|(p, i)| (&p[1..], *i))
                .collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Extract { paths: &below, found: &mut *self.found })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        self.set_leaves(FieldValue::Composite);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<(), E> {
        self.set_leaves(FieldValue::Scalar(v.to_string()));
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<(), E> {
        self.set_leaves(FieldValue::Scalar(v.to_string()));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<(), E> {
        self.set_leaves(FieldValue::Scalar(v.to_string()));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<(), E> {
        self.set_leaves(FieldValue::Scalar(v.to_string()));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<(), E> {
        self.set_leaves(FieldValue::Scalar(
            serde_json::Number::from_f64(v).map_or_else(String::new, |n| n.to_string()),
        ));
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
}

impl Extract<'_, '_> {
    /// A scalar (or array) reached: it is the value of the paths that end here; paths
    /// that go deeper find nothing.
    fn set_leaves(self, v: FieldValue) {
        for (p, i) in self.paths {
            if p.is_empty() {
                self.found[*i] = v.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn task() -> Value {
        json!({"apiVersion": "corral.dev/v1", "kind": "Task",
               "metadata": {"name": "web", "namespace": "default", "labels": {"a": "b"}},
               "spec": {"nodeName": "n1", "command": ["x"], "resources": {"cpus": 0.5, "mem": 64}},
               "status": {"phase": "RUNNING", "exitCode": 0, "health": {"healthy": true}}})
    }

    #[test]
    fn field_selectors_match_like_kubernetes() {
        let t = task();
        let m = |s: &str| {
            let sel = FieldSelector::parse(s).expect("parses");
            let by_value = sel.matches(&t);
            assert_eq!(by_value, sel.matches_json(&serde_json::to_vec(&t).expect("json")), "{s}");
            by_value
        };
        assert!(m("spec.nodeName=n1"));
        assert!(m("spec.nodeName==n1"));
        assert!(!m("spec.nodeName!=n1"));
        assert!(m("spec.nodeName!=n2"));
        assert!(m("metadata.name=web,metadata.namespace=default"));
        assert!(m("status.phase=RUNNING,spec.nodeName=n1"));
        assert!(!m("status.phase=RUNNING,spec.nodeName=n2"));
        assert!(m("spec.missing="), "an absent field is the empty string");
        assert!(!m("spec.nodeName="));
        assert!(m("status.exitCode=0"));
        assert!(m("spec.resources.cpus=0.5"));
        assert!(m("status.health.healthy=true"));
        assert!(!m("spec.command=x"), "arrays equal nothing");
        assert!(m("spec.command!=x"));
        assert!(!m("spec.resources=x"), "objects equal nothing");
        assert!(m("spec.nodeName.deeper="), "below a scalar there is nothing");
        assert!(m(""));
    }

    #[test]
    fn malformed_field_selectors_are_rejected_with_the_term() {
        let e = FieldSelector::parse("spec.nodeName").expect_err("no operator");
        assert!(e.to_string().contains("spec.nodeName"), "{e}");
        assert!(FieldSelector::parse("spec..x=1").is_err());
        assert!(FieldSelector::parse("spec.a b=1").is_err());
    }

    #[test]
    fn not_an_object_matches_nothing() {
        let sel = FieldSelector::parse("metadata.name=a").expect("parses");
        assert!(!sel.matches_json(b"not json"));
        assert!(!sel.matches_json(b"[1,2]"));
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-z]{0,3}".prop_map(Value::from),
            (0i64..3).prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            Just(json!({"x": "a"})),
            Just(json!(["a"])),
        ]
    }

    proptest! {
        #[test]
        fn reading_the_bytes_agrees_with_reading_the_value(
            a in scalar(), b in scalar(), want in "[a-z0-2]{0,2}", ne in any::<bool>()
        ) {
            let obj = json!({"metadata": {"name": a}, "spec": {"x": {"y": b}}});
            let op = if ne { "!=" } else { "=" };
            for field in ["metadata.name", "spec.x.y", "spec.x", "status.z"] {
                let sel = FieldSelector::parse(&format!("{field}{op}{want}")).expect("parses");
                prop_assert_eq!(sel.matches(&obj), sel.matches_json(&serde_json::to_vec(&obj).expect("json")));
            }
        }

        #[test]
        fn printed_field_selectors_parse_back(s in "[a-z]{1,4}(\\.[a-z]{1,4}){0,2}(=|!=)[a-z0-9]{0,4}") {
            let sel = FieldSelector::parse(&s).expect("parses");
            prop_assert_eq!(FieldSelector::parse(&sel.to_string()).expect("parses"), sel);
        }
    }
}
