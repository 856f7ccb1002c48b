//! The README's commands are the binary's: every `corral ...` in its shell blocks names
//! a subcommand that exists, with options that subcommand takes (as its `--help` lists them),
//! so the tour cannot drift from what runs. (That the tour's steps succeed end to end
//! is `cli_up`'s business for the core path.)

use std::collections::BTreeMap;
use std::process::Command;

fn help(path: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(path).arg("--help").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `corral ...` invocations of the README's `sh` blocks, comments dropped.
fn invocations(readme: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split(" #").next().unwrap_or_default();
        for part in code.split(['&', ';', '|', '(', ')']) {
            let part = part.trim();
            if let Some(rest) = part.strip_prefix("corral ") {
                found.push(rest.to_string());
            }
        }
    }
    found
}

#[test]
fn readme_commands_name_real_subcommands_and_options() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let calls = invocations(&readme);
    assert!(calls.len() > 40, "the tour's commands are found: {calls:#?}");
    let mut helps: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut wrong = Vec::new();
    for call in &calls {
        let words: Vec<&str> = call.split_whitespace().collect();
        // Global options before the subcommand (`corral --kubeconfig F token ...`).
        let mut i = 0;
        while words.get(i).is_some_and(|w| w.starts_with("--")) {
            i += 2;
        }
        // The longest chain of words that is a command.
        let mut path: Vec<String> = Vec::new();
        for w in &words[i..] {
            if w.starts_with('-') || w.contains(['/', '.', '$', '=']) {
                break;
            }
            let mut next = path.clone();
            next.push(w.to_string());
            let refs: Vec<&str> = next.iter().map(String::as_str).collect();
            // Only a word the parent lists as a subcommand extends the path.
            let parent = helps
                .entry(path.clone())
                .or_insert_with(|| help(&path.iter().map(String::as_str).collect::<Vec<_>>()).unwrap_or_default());
            if !parent.contains("Commands:") || help(&refs).is_none() {
                break;
            }
            path = next;
        }
        if path.is_empty() {
            wrong.push(format!("corral {call}: no such subcommand"));
            continue;
        }
        let text = helps
            .entry(path.clone())
            .or_insert_with(|| help(&path.iter().map(String::as_str).collect::<Vec<_>>()).unwrap_or_default())
            .clone();
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let name = flag.split('=').next().unwrap_or(flag);
            if !text.contains(&format!("{name} "))
                && !text.contains(&format!("{name}\n"))
                && !text.contains(&format!("{name}="))
            {
                wrong.push(format!("corral {call}: `{}` does not take {name}", path.join(" ")));
            }
        }
    }
    assert!(wrong.is_empty(), "README commands that do not run as written:\n{}", wrong.join("\n"));
}
