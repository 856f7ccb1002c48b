//! `corral edit KIND/NAME`: the object in `$EDITOR` as YAML, written back when the
//! editor exits. A concurrent change is not a reason to lose the edit: on a conflict,
//! what the user changed is applied to the object as it now is. An edit the server
//! refuses is kept in a file whose path the error names.

use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_api::KindInfo;
use corral_client::{Patch, WriteParams};
use serde_json::{Map, Value};

use super::args::EditArgs;
use super::output::to_yaml;
use super::{Ctx, kind_word};

/// Written above the object, as kubectl does; `#` lines are dropped when read back.
const HEADER: &str = "# Edit the object below and save to apply it; close the editor without saving, or \
                      empty the file, to cancel.\n# Lines beginning with '#' are ignored.\n#\n";

pub(crate) async fn run(ctx: &Ctx, a: EditArgs) -> anyhow::Result<u8> {
    let (kind_name, name) = match a.target.as_slice() {
        [one] => match one.split_once('/') {
            Some((k, n)) if !n.is_empty() && !n.contains('/') => (k.to_string(), n.to_string()),
            _ => anyhow::bail!("{one:?}: name the object as KIND/NAME (or KIND NAME), e.g. `corral edit cm/web`"),
        },
        [k, n] => (k.clone(), n.clone()),
        _ => anyhow::bail!("name one object: KIND/NAME or KIND NAME, e.g. `corral edit cm/web`"),
    };
    let kind = ctx.resolve(&kind_name).await?;
    let namespace = kind.namespaced.then(|| a.ns.or_default().to_string());
    let original = serde_json::to_value(ctx.client.get(&kind, namespace.as_deref(), &name).await?)?;
    let short = format!("{}/{name}", kind_word(&kind));

    let path = edit_file(&name)?;
    std::fs::write(&path, format!("{HEADER}{}", to_yaml(&original)?))
        .with_context(|| format!("cannot write the object to {}", path.display()))?;
    run_editor(&path).await?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {} back", path.display()))?;
    let body: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect();
    if body.trim().is_empty() {
        let _ = std::fs::remove_file(&path);
        eprintln!("Edit cancelled: the file was emptied; no changes made.");
        return Ok(0);
    }
    match write_back(ctx, &kind, namespace.as_deref(), &name, &original, &body).await {
        Ok(Outcome::Unchanged) => {
            let _ = std::fs::remove_file(&path);
            eprintln!("Edit cancelled, no changes made.");
            Ok(0)
        }
        Ok(Outcome::Edited { merged }) => {
            let _ = std::fs::remove_file(&path);
            if merged {
                eprintln!("{short} changed while it was being edited; the edit was applied to its current version");
            }
            outln!("{short} edited")?;
            Ok(0)
        }
        Err(e) => Err(e.context(format!(
            "{short} was not changed; the edit is kept in {} (fix it and run `corral apply -f {}`, or `corral edit` again)",
            path.display(),
            path.display()
        ))),
    }
}

/// What writing the edit back did.
enum Outcome {
    /// The edit changed nothing.
    Unchanged,
    /// Written; `merged` when it was applied to a version changed meanwhile.
    Edited { merged: bool },
}

async fn write_back(
    ctx: &Ctx,
    kind: &KindInfo,
    namespace: Option<&str>,
    name: &str,
    original: &Value,
    body: &str,
) -> anyhow::Result<Outcome> {
    let edited: Value = serde_norway::from_str(body).context("the edited text is not valid YAML")?;
    if !edited.is_object() {
        anyhow::bail!("the edited text is not an object (a mapping with apiVersion, kind, metadata)");
    }
    for (pointer, field) in [("/apiVersion", "apiVersion"), ("/kind", "kind"), ("/metadata/name", "metadata.name")] {
        if edited.pointer(pointer) != original.pointer(pointer) {
            anyhow::bail!("{field} cannot be changed by an edit (it names the object); create another object instead");
        }
    }
    let namespace_of = |v: &Value| v.pointer("/metadata/namespace").cloned();
    if namespace_of(&edited) != namespace_of(original) {
        anyhow::bail!("metadata.namespace cannot be changed by an edit (it names the object)");
    }
    let patch = merge_patch(&without_server_fields(original), &without_server_fields(&edited));
    if patch.as_object().is_some_and(Map::is_empty) {
        return Ok(Outcome::Unchanged);
    }
    match ctx.client.update(kind, &edited, &WriteParams::default()).await {
        Ok(_) => Ok(Outcome::Edited { merged: false }),
        // Someone wrote the object meanwhile: send what the user changed, and only
        // that, as a merge patch (the server applies it to the current version).
        Err(e) if e.is_conflict() => {
            ctx.client.patch(kind, namespace, name, Patch::Merge(&patch), &WriteParams::default()).await?;
            Ok(Outcome::Edited { merged: true })
        }
        Err(e) => Err(e.into()),
    }
}

/// The object without what the server alone writes, so that an edit is judged by
/// what the user changed.
fn without_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp"] {
            m.remove(f);
        }
    }
    v
}

/// The RFC 7386 merge patch that turns `from` into `to`: changed and added members
/// as they are in `to`, removed ones as `null`, objects compared member by member.
fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut patch = Map::new();
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv) if fv.is_object() && tv.is_object() => {
                        patch.insert(k.clone(), merge_patch(fv, tv));
                    }
                    _ => {
                        patch.insert(k.clone(), tv.clone());
                    }
                }
            }
            for k in f.keys().filter(|k| !t.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// A new file in the temporary directory for the edit of `name`, made by this process
/// alone (`create_new`), readable by its owner alone: objects may hold secrets.
fn edit_file(name: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = std::env::temp_dir();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = dir.join(format!("corral-edit-{safe}-{}-{stamp}.yaml", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {} for the edit (is $TMPDIR writable?)", path.display()))?;
    Ok(path)
}

/// Runs `$VISUAL`, else `$EDITOR`, else `vi` on `path` through the shell (editors are
/// often given with arguments, `code --wait`), with the terminal; fails unless it
/// exits 0.
async fn run_editor(path: &Path) -> anyhow::Result<()> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_string());
    let path_arg = path.to_path_buf();
    let status = tokio::task::spawn_blocking({
        let editor = editor.clone();
        move || {
            std::process::Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&path_arg).status()
        }
    })
    .await?
    .with_context(|| format!("cannot run the editor {editor:?} (set $EDITOR)"))?;
    if !status.success() {
        let _ = std::fs::remove_file(path);
        anyhow::bail!("the editor {editor:?} exited with {status}; nothing was changed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_carries_changes_additions_and_removals_only() {
        let from = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"data": {"k": "v"}}});
        let to = json!({"metadata": {"name": "a", "labels": {"x": "1", "z": "3"}}, "spec": {"data": {"k": "w"}}});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"metadata": {"labels": {"y": null, "z": "3"}}, "spec": {"data": {"k": "w"}}})
        );
        assert_eq!(merge_patch(&from, &from), json!({}));
    }
}
