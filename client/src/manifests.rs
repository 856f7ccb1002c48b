//! Reading manifests: files, directories (recursively), stdin; multi-document YAML,
//! JSON, and `List` documents. Every problem is collected with where it is, so that a
//! user sees all of them at once.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use corral_api::nesting;
use serde::Deserialize;
use serde_json::Value;

/// Extensions read when walking a directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// One object read from a manifest.
#[derive(Clone, Debug)]
pub struct Document {
    /// Where it came from: a path, or `<stdin>`.
    pub source: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    /// 0-based position inside a `List` document, when it came from one.
    pub item: Option<usize>,
    /// The object as written.
    pub value: Value,
    /// Position of the file among those read, for sorting problems.
    pub file_no: usize,
}

impl Document {
    /// `FILE: document N` (and `, item I` inside a list).
    pub fn place(&self) -> String {
        match self.item {
            Some(i) => format!("{}: document {}, item {}", self.source, self.index, i),
            None => format!("{}: document {}", self.source, self.index),
        }
    }

    /// `kind`, as written.
    pub fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    /// `apiVersion`, as written.
    pub fn api_version(&self) -> Option<&str> {
        self.value.get("apiVersion").and_then(Value::as_str)
    }

    /// `metadata.name`, as written.
    pub fn name(&self) -> Option<&str> {
        self.value.pointer("/metadata/name").and_then(Value::as_str)
    }

    /// `metadata.namespace`, as written.
    pub fn namespace(&self) -> Option<&str> {
        self.value.pointer("/metadata/namespace").and_then(Value::as_str)
    }

    /// `Kind/name` for messages, with `?` for what is missing.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind().unwrap_or("?"), self.name().unwrap_or("?"))
    }

    /// A problem with this document.
    pub fn problem(&self, field: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            order: (self.file_no, self.index, self.item.map_or(0, |i| i + 1)),
            place: self.place(),
            object: Some(self.label()),
            field: field.filter(|f| !f.is_empty()).map(str::to_string),
            message: message.into(),
        }
    }
}

/// Something wrong with a manifest: `FILE: document N (Kind/name): field.path: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// (file, document, item) position, so that problems print in file order.
    pub order: (usize, usize, usize),
    /// `FILE` or `FILE: document N`.
    pub place: String,
    /// `Kind/name`, when known.
    pub object: Option<String>,
    /// Dotted path of the offending field, when there is one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.place)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads every document under `paths`, in order (directory contents sorted by path).
/// Returns the documents that could be read and every problem met on the way.
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    let mut stdin_read = false;
    let mut file_no = 0;
    for path in paths {
        file_no += 1;
        if path.as_os_str() == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => parse_into(file_no, "<stdin>", &text, None, &mut docs, &mut problems),
                Err(e) => problems.push(file_problem(file_no, "<stdin>", format!("cannot read: {e}"))),
            }
            continue;
        }
        let files = match collect_files(path) {
            Ok(f) => f,
            Err(message) => {
                problems.push(file_problem(file_no, &path.display().to_string(), message));
                continue;
            }
        };
        for file in files {
            file_no += 1;
            read_file(file_no, &file, &file.display().to_string(), &mut docs, &mut problems);
        }
    }
    (docs, problems)
}

/// Reads every manifest under the directory `root` (a repository's checkout, a
/// directory being synced), sorted by path, each file named by its path relative to
/// `root` with `/` separators, as a repository names it.
pub fn read_tree(root: &Path) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    let files = match collect_files(root) {
        Ok(f) => f,
        Err(message) => return (docs, vec![file_problem(0, &root.display().to_string(), message)]),
    };
    for (i, file) in files.iter().enumerate() {
        let relative = file.strip_prefix(root).unwrap_or(file);
        let source = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        read_file(i + 1, file, &source, &mut docs, &mut problems);
    }
    (docs, problems)
}

fn read_file(file_no: usize, file: &Path, source: &str, docs: &mut Vec<Document>, problems: &mut Vec<Problem>) {
    match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_into(file_no, source, &text, extension(file), docs, problems),
            Err(_) => problems.push(file_problem(file_no, source, "is not UTF-8 text".to_string())),
        },
        Err(e) => problems.push(file_problem(file_no, source, format!("cannot read: {e}"))),
    }
}

fn file_problem(file_no: usize, source: &str, message: String) -> Problem {
    Problem { order: (file_no, 0, 0), place: source.to_string(), object: None, field: None, message }
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

/// A file as itself; a directory as every manifest under it, sorted. Errors say
/// what is wrong with `path`.
fn collect_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be read: {e}")
        }
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    walk(path, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err("is a directory without *.yaml, *.yml or *.json files".to_string());
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot list directory {}: {e}", dir.display());
    for entry in std::fs::read_dir(dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let path = entry.path();
        // Symlinked directories are not followed, so a link cycle cannot loop forever.
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk(&path, out)?;
        } else if extension(&path).is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x))) {
            out.push(path);
        }
    }
    Ok(())
}

/// Splits one file's text into documents. JSON when the extension says so or the
/// text starts like JSON; YAML otherwise.
fn parse_into(
    file_no: usize,
    source: &str,
    text: &str,
    ext: Option<&str>,
    docs: &mut Vec<Document>,
    problems: &mut Vec<Problem>,
) {
    let looks_json = match ext {
        Some(e) => e.eq_ignore_ascii_case("json"),
        None => text.trim_start().starts_with('{'),
    };
    // Checked before decoding: a deeply nested document costs the decoder time that
    // grows with the square of its depth.
    let depth = if looks_json { nesting::check_json } else { nesting::check_yaml };
    if let Err(e) = depth(text.as_bytes(), nesting::MAX_NESTING_DEPTH) {
        problems.push(Problem {
            order: (file_no, 0, 0),
            place: source.to_string(),
            object: None,
            field: None,
            message: format!("not read: {e}"),
        });
        return;
    }
    let mut index = 0;
    if looks_json {
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            index += 1;
            match value {
                Ok(v) => add_document(file_no, source, index, v, docs, problems),
                Err(e) => {
                    problems.push(Problem {
                        order: (file_no, index, 0),
                        place: format!("{source}: document {index}"),
                        object: None,
                        field: None,
                        message: format!("invalid JSON: {e}"),
                    });
                    // The rest of the stream cannot be found reliably after an error.
                    return;
                }
            }
        }
        return;
    }
    for de in serde_norway::Deserializer::from_str(text) {
        index += 1;
        match Value::deserialize(de) {
            Ok(v) => add_document(file_no, source, index, v, docs, problems),
            Err(e) => {
                let mut message = format!("invalid YAML: {e}");
                if let Some(loc) = e.location().filter(|_| !message.contains(" line ")) {
                    message.push_str(&format!(" at line {} column {}", loc.line(), loc.column()));
                }
                problems.push(Problem {
                    order: (file_no, index, 0),
                    place: format!("{source}: document {index}"),
                    object: None,
                    field: None,
                    message,
                });
                // After a syntax error the parser cannot find the next document.
                return;
            }
        }
    }
}

fn add_document(
    file_no: usize,
    source: &str,
    index: usize,
    value: Value,
    docs: &mut Vec<Document>,
    problems: &mut Vec<Problem>,
) {
    let place = format!("{source}: document {index}");
    match value {
        // An empty document (`---` followed by nothing, or only comments).
        Value::Null => {}
        Value::Object(ref map) => {
            let is_list = map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array);
            if !is_list {
                docs.push(Document { source: source.to_string(), index, item: None, value, file_no });
                return;
            }
            if let Some(Value::Array(items)) = map.get("items") {
                for (i, item) in items.iter().enumerate() {
                    if item.is_object() {
                        docs.push(Document {
                            source: source.to_string(),
                            index,
                            item: Some(i),
                            value: item.clone(),
                            file_no,
                        });
                    } else {
                        problems.push(Problem {
                            order: (file_no, index, i + 1),
                            place: format!("{place}, item {i}"),
                            object: None,
                            field: None,
                            message: "a list item must be an object with apiVersion, kind and metadata".into(),
                        });
                    }
                }
            }
        }
        _ => problems.push(Problem {
            order: (file_no, index, 0),
            place,
            object: None,
            field: None,
            message: "a document must be an object with apiVersion, kind and metadata".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever bytes a manifest holds, decoding ends in documents or problems
        /// that name where they are, never in a panic.
        #[test]
        fn any_text_decodes_without_panicking(
            text in proptest::string::string_regex("([a-zA-Z0-9:{}\\[\\],\"'\\- #|>&*!%@`\n\t.]|---\n){0,200}").unwrap(),
            json in any::<bool>(),
        ) {
            let (docs, problems) = parse(&text, Some(if json { "json" } else { "yaml" }));
            for p in &problems {
                prop_assert!(p.place.starts_with("f.yaml: document "), "{}", p.place);
            }
            prop_assert!(docs.len() + problems.len() <= text.len() + 1);
        }
    }

    fn parse(text: &str, ext: Option<&str>) -> (Vec<Document>, Vec<Problem>) {
        let (mut d, mut p) = (Vec::new(), Vec::new());
        parse_into(0, "f.yaml", text, ext, &mut d, &mut p);
        (d, p)
    }

    #[test]
    fn multi_document_yaml_keeps_document_positions() {
        let (docs, problems) = parse("kind: A\n---\n# only a comment\n---\nkind: B\n", Some("yaml"));
        assert!(problems.is_empty(), "{problems:?}");
        let got: Vec<_> = docs.iter().map(|d| (d.index, d.kind().unwrap_or_default().to_string())).collect();
        assert_eq!(got, vec![(1, "A".to_string()), (3, "B".to_string())]);
    }

    #[test]
    fn yaml_syntax_error_names_document_and_line() {
        let (docs, problems) = parse("kind: A\n---\nkind: B\nmetadata:\n  name: [x\n", Some("yml"));
        assert_eq!(docs.len(), 1);
        assert_eq!(problems.len(), 1);
        let msg = problems[0].to_string();
        assert!(msg.starts_with("f.yaml: document 2: invalid YAML"), "{msg}");
        assert!(msg.contains("line "), "{msg}");
    }

    #[test]
    fn json_stream_and_lists_are_split() {
        let text = r#"{"kind":"List","items":[{"kind":"A"},{"kind":"B"}]} {"kind":"C"}"#;
        let (docs, problems) = parse(text, Some("json"));
        assert!(problems.is_empty(), "{problems:?}");
        let got: Vec<_> = docs.iter().map(|d| (d.index, d.item, d.kind().unwrap_or_default().to_string())).collect();
        assert_eq!(got, vec![(1, Some(0), "A".into()), (1, Some(1), "B".into()), (2, None, "C".into())]);
    }

    #[test]
    fn scalar_document_is_a_problem() {
        let (docs, problems) = parse("just text\n", Some("yaml"));
        assert!(docs.is_empty());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn problem_reads_file_document_object_field_message() {
        let p = Problem {
            order: (0, 2, 0),
            place: "m.yaml: document 2".into(),
            object: Some("ConfigMap/b".into()),
            field: Some("spec.extra".into()),
            message: "unknown field".into(),
        };
        assert_eq!(p.to_string(), "m.yaml: document 2 (ConfigMap/b): spec.extra: unknown field");
    }

    #[test]
    fn directories_are_read_recursively_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "kind: B\n").unwrap();
        std::fs::write(dir.path().join("a.json"), r#"{"kind":"A"}"#).unwrap();
        std::fs::write(dir.path().join("sub/c.yml"), "kind: C\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "kind: X\n").unwrap();
        let (docs, problems) = read_paths(&[dir.path().to_path_buf()]);
        assert!(problems.is_empty(), "{problems:?}");
        let kinds: Vec<_> = docs.iter().map(|d| d.kind().unwrap_or_default().to_string()).collect();
        assert_eq!(kinds, vec!["A", "B", "C"]);
        let (docs, problems) = read_tree(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        let sources: Vec<_> = docs.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(sources, vec!["a.json", "b.yaml", "sub/c.yml"]);
    }
}
