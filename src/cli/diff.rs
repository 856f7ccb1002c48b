//! `corral diff`: what `apply` would change, as a unified diff of YAML.

use corral_api::DynamicObject;
use corral_api::apply::is_last_applied;
use serde_json::Value;

use super::Ctx;
use super::apply::{documents_with_problems, plan, prepare, print_problems};
use super::args::DiffArgs;
use super::output::to_yaml;

/// Lines of unchanged context around each change.
const CONTEXT: usize = 3;

/// Beyond this many edits the diff is shown as "all removed, all added": cheaper
/// than finding the shortest script, and just as useful when that much differs.
const MAX_EDITS: usize = 2_000;

pub(crate) async fn run(ctx: &Ctx, args: DiffArgs) -> anyhow::Result<u8> {
    let (prepared, mut problems) = prepare(ctx, &args.files, &args.ns).await?;
    let total = prepared.len() + documents_with_problems(&problems);
    let (plans, server) = plan(ctx, prepared, false).await?;
    problems.extend(server);
    if !problems.is_empty() {
        print_problems(problems, total, "no diff was computed");
        return Ok(2);
    }
    let mut differs = false;
    for p in &plans {
        let before = match &p.live {
            Some(l) => to_yaml(&comparable(l))?,
            None => String::new(),
        };
        let after = to_yaml(&comparable(&p.would_be))?;
        if before == after {
            continue;
        }
        differs = true;
        let pr = &p.prepared;
        let id = match &pr.namespace {
            Some(ns) if pr.kind.namespaced => {
                format!("{}/{ns}/{}", super::kind_word(&pr.kind), pr.name)
            }
            _ => format!("{}/{}", super::kind_word(&pr.kind), pr.name),
        };
        out!("--- live/{id}\n+++ merged/{id}\n{}", unified(&before, &after, CONTEXT))?;
    }
    Ok(u8::from(differs))
}

/// The object without what changes on every write or only says who wrote it:
/// `resourceVersion`, `generation`, `uid`, `creationTimestamp`, `managedFields` and
/// the last-applied annotations.
pub(crate) fn comparable(obj: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["resourceVersion", "generation", "uid", "creationTimestamp", "managedFields"] {
            meta.remove(f);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.retain(|k, _| !is_last_applied(k));
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equal,
    Delete,
    Insert,
}

/// The shortest edit script turning `a` into `b` (Myers' O(ND) algorithm), or a
/// full replacement when more than [`MAX_EDITS`] edits are needed.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = (a.len() + b.len()).min(MAX_EDITS) as isize;
    let offset = max + 1;
    let mut v = vec![0isize; (2 * max + 3) as usize];
    // trace[d] is `v` as it was before step d, kept for walking back.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let at = |k: isize| (k + offset) as usize;
    for d in 0..=max {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let mut x =
                if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) { v[at(k + 1)] } else { v[at(k - 1)] + 1 };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                return backtrack(&trace, n, m, at);
            }
            k += 2;
        }
    }
    let mut ops = vec![Op::Delete; a.len()];
    ops.extend(std::iter::repeat_n(Op::Insert, b.len()));
    ops
}

fn backtrack(trace: &[Vec<isize>], n: isize, m: isize, at: impl Fn(isize) -> usize) -> Vec<Op> {
    let (mut x, mut y) = (n, m);
    let mut ops = Vec::new();
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) { k + 1 } else { k - 1 };
        let prev_x = v[at(prev_k)];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            ops.push(Op::Equal);
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            ops.push(if x == prev_x { Op::Insert } else { Op::Delete });
        }
        x = prev_x;
        y = prev_y;
    }
    ops.reverse();
    ops
}

/// A unified diff (hunks only, no file header) of two texts, `context` lines of
/// context around each change. Empty when they are equal.
fn unified(before: &str, after: &str, context: usize) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = edit_script(&a, &b);
    // Line positions in `a` and `b` before each op.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0usize, 0usize);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Equal => {
                i += 1;
                j += 1;
            }
            Op::Delete => i += 1,
            Op::Insert => j += 1,
        }
    }
    pos.push((i, j));
    let changes: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| **o != Op::Equal).map(|(i, _)| i).collect();
    let mut out = String::new();
    let mut c = 0;
    while c < changes.len() {
        let start = changes[c].saturating_sub(context);
        let mut end = (changes[c] + 1 + context).min(ops.len());
        c += 1;
        // Changes whose context would touch or overlap this hunk's join it.
        while c < changes.len() && changes[c].saturating_sub(context) <= end {
            end = (changes[c] + 1 + context).min(ops.len());
            c += 1;
        }
        let (a0, b0) = pos[start];
        let (a1, b1) = pos[end];
        let range = |s: usize, len: usize| {
            if len == 0 { format!("{s},0") } else { format!("{},{len}", s + 1) }
        };
        out.push_str(&format!("@@ -{} +{} @@\n", range(a0, a1 - a0), range(b0, b1 - b0)));
        for (k, op) in ops.iter().enumerate().take(end).skip(start) {
            let (ai, bi) = pos[k];
            match op {
                Op::Equal => out.push_str(&format!(" {}\n", a[ai])),
                Op::Delete => out.push_str(&format!("-{}\n", a[ai])),
                Op::Insert => out.push_str(&format!("+{}\n", b[bi])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use corral_api::apply::LAST_APPLIED_ANNOTATION;

    use super::*;

    fn apply_script(a: &[&str], b: &[&str], ops: &[Op]) -> Vec<String> {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Equal => {
                    assert_eq!(a[i], b[j]);
                    out.push(a[i].to_string());
                    i += 1;
                    j += 1;
                }
                Op::Delete => i += 1,
                Op::Insert => {
                    out.push(b[j].to_string());
                    j += 1;
                }
            }
        }
        assert_eq!((i, j), (a.len(), b.len()));
        out
    }

    #[test]
    fn edit_script_is_shortest_and_correct() {
        let a = ["a", "b", "c", "a", "b", "b", "a"];
        let b = ["c", "b", "a", "b", "a", "c"];
        let ops = edit_script(&a, &b);
        assert_eq!(apply_script(&a, &b, &ops), b);
        assert_eq!(ops.iter().filter(|o| **o != Op::Equal).count(), 5);
        assert!(edit_script(&[], &[]).is_empty());
        assert_eq!(edit_script(&["x"], &[]), vec![Op::Delete]);
        assert_eq!(edit_script(&[], &["x"]), vec![Op::Insert]);
    }

    #[test]
    fn unified_diff_has_hunks_with_context() {
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let after = "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n";
        let d = unified(before, after, 3);
        assert_eq!(d, "@@ -1,6 +1,6 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n@@ -10,3 +10,4 @@\n 10\n 11\n 12\n+13\n");
        assert_eq!(unified(before, before, 3), "");
    }

    #[test]
    fn diff_from_nothing_adds_every_line() {
        assert_eq!(unified("", "a: 1\n", 3), "@@ -0,0 +1,1 @@\n+a: 1\n");
    }

    #[test]
    fn noise_is_ignored_when_comparing() {
        let obj = |rv: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "corral.dev/v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "resourceVersion": rv, "generation": 1,
                             "annotations": {LAST_APPLIED_ANNOTATION: rv}},
                "spec": {"data": {"k": "v"}}}))
            .unwrap()
        };
        assert_eq!(comparable(&obj("1")), comparable(&obj("2")));
        assert!(comparable(&obj("1")).pointer("/metadata/annotations").is_none());
    }
}
