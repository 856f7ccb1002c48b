//! Printing objects: aligned tables, YAML, JSON and `kind/name`.

use std::collections::BTreeMap;

use corral_api::ColumnType;
pub use corral_api::table::{age, human_duration, now_unix, parse_rfc3339, printer_cell};
use corral_api::{DynamicObject, KindInfo};
use serde::Serialize;

use super::args::OutputFormat;

/// Rows of cells printed in aligned columns, kubectl style: columns separated by at
/// least three spaces, the last one unpadded.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column headers, upper case.
    pub headers: Vec<String>,
    /// Cells, one vector per row, as many as headers.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// The width of each column: its widest cell, header included.
    pub fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(x) = w.get_mut(i) {
                    *x = (*x).max(cell.chars().count());
                }
            }
        }
        w
    }

    /// The header and every row, each line ending in a newline.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = render_row(&self.headers, &widths);
        for row in &self.rows {
            out.push_str(&render_row(row, &widths));
        }
        out
    }
}

/// One line of a table, padded to `widths` (cells wider than their column push the
/// rest of the line right rather than being cut).
pub fn render_row(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < cells.len() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(cell.chars().count()) + 3;
            line.push_str(&" ".repeat(pad));
        }
    }
    line.push('\n');
    line
}

/// The columns of `corral get` for a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// `metadata.namespace`.
    Namespace,
    /// `metadata.name`.
    Name,
    /// A column the kind declares (built-in kinds, and custom ones through their
    /// definition's `additionalPrinterColumns`).
    Printer {
        /// The header as shown.
        header: String,
        /// Where the value is, as a JSON pointer.
        pointer: String,
        /// How it is shown.
        type_: ColumnType,
    },
    /// Time since `metadata.creationTimestamp`.
    Age,
    /// `metadata.labels` as `k=v,...`.
    Labels,
    /// `metadata.generation`.
    Generation,
    /// `metadata.resourceVersion`.
    ResourceVersion,
}

/// A declared column's header: in capitals, but for units in parentheses (`MEM(MiB)`).
fn header_text(name: &str) -> String {
    let mut depth = 0usize;
    name.chars()
        .map(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 { c.to_ascii_uppercase() } else { c }
        })
        .collect()
}

impl Column {
    /// The header of the column.
    pub fn header(&self) -> &str {
        match self {
            Column::Namespace => "NAMESPACE",
            Column::Name => "NAME",
            Column::Printer { header, .. } => header,
            Column::Age => "AGE",
            Column::Labels => "LABELS",
            Column::Generation => "GENERATION",
            Column::ResourceVersion => "RESOURCEVERSION",
        }
    }

    /// The cell of `obj` in this column, `now` in Unix seconds.
    pub fn cell(&self, obj: &DynamicObject, now: i64) -> String {
        let m = &obj.metadata;
        match self {
            Column::Namespace => m.namespace.clone().unwrap_or_default(),
            Column::Name => m.name.clone(),
            // As kubectl shows pods: an object on its way out (finalizers pending) says
            // so where its state is shown, whatever its last phase was.
            Column::Printer { header, .. } if m.deletion_timestamp.is_some() && is_state_column(header) => {
                "Terminating".to_string()
            }
            Column::Printer { pointer, type_, .. } => {
                let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
                let top = parts.next().unwrap_or_default();
                let rest = parts.next().map(|r| format!("/{r}")).unwrap_or_default();
                let value = match top {
                    "metadata" => serde_json::to_value(m).ok().and_then(|v| v.pointer(&rest).cloned()),
                    _ => obj.rest.get(top).and_then(|v| v.pointer(&rest)).cloned(),
                };
                printer_cell(*type_, value.as_ref(), now)
            }
            Column::Age => age(m.creation_timestamp.as_deref(), now),
            Column::Labels => labels_text(&m.labels),
            Column::Generation => m.generation.map_or_else(|| "<none>".to_string(), |g| g.to_string()),
            Column::ResourceVersion => m.resource_version.clone().unwrap_or_else(|| "<none>".to_string()),
        }
    }
}

/// Whether a declared column shows the object's state (`STATUS`, `PHASE`).
fn is_state_column(header: &str) -> bool {
    matches!(header, "STATUS" | "PHASE")
}

/// The columns shown for `kind`: namespace (across namespaces), name, the columns the
/// kind declares, age; `wide` adds the declared columns of lower priority, labels,
/// generation and resource version.
pub fn columns(kind: &KindInfo, all_namespaces: bool, wide: bool) -> Vec<Column> {
    let mut cols = Vec::new();
    if all_namespaces && kind.namespaced {
        cols.push(Column::Namespace);
    }
    cols.push(Column::Name);
    for c in kind.columns.iter().filter(|c| wide || c.priority <= 0) {
        // The server checks definitions' paths; a column it could not read shows
        // nothing rather than failing the listing.
        let pointer = c.pointer().unwrap_or_default();
        cols.push(Column::Printer { header: header_text(&c.name), pointer, type_: c.type_ });
    }
    cols.push(Column::Age);
    if wide {
        cols.extend([Column::Labels, Column::Generation, Column::ResourceVersion]);
    }
    cols
}

/// A table of `objects` in `columns`.
pub fn object_table(cols: &[Column], objects: &[DynamicObject], now: i64) -> Table {
    let mut t = Table::new(cols.iter().map(|c| c.header()));
    for o in objects {
        t.rows.push(cols.iter().map(|c| c.cell(o, now)).collect());
    }
    t
}

/// `k=v,k2=v2`, or `<none>`.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "<none>".to_string();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `kind/name`, the `-o name` form.
pub fn name_line(kind: &KindInfo, obj: &DynamicObject) -> String {
    format!("{}/{}", kind.kind.to_ascii_lowercase(), obj.metadata.name)
}

/// A `List` of objects, as `-o yaml|json` prints several.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrintedList<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ListMeta,
    items: &'a [DynamicObject],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<String>,
}

impl<'a> PrintedList<'a> {
    /// A list of `items` taken at `resource_version`.
    pub fn new(items: &'a [DynamicObject], resource_version: Option<String>) -> Self {
        PrintedList {
            api_version: corral_api::API_VERSION,
            kind: "List",
            metadata: ListMeta { resource_version },
            items,
        }
    }
}

/// `value` as YAML, ending in a newline.
pub fn to_yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(value)?)
}

/// `value` as indented JSON, ending in a newline.
pub fn to_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

/// One object in a machine format (`yaml`, `json`, `name`), for streams: YAML
/// documents are preceded by `---`.
pub fn object_text(format: OutputFormat, kind: &KindInfo, obj: &DynamicObject, stream: bool) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Yaml if stream => format!("---\n{}", to_yaml(obj)?),
        OutputFormat::Yaml => to_yaml(obj)?,
        OutputFormat::Json => to_json(obj)?,
        OutputFormat::Name | OutputFormat::Table | OutputFormat::Wide => {
            format!("{}\n", name_line(kind, obj))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_aligned() {
        let mut t = Table::new(["NAME", "AGE"]);
        t.rows.push(vec!["a-long-name".into(), "5s".into()]);
        t.rows.push(vec!["b".into(), "10m".into()]);
        assert_eq!(t.render(), "NAME          AGE\na-long-name   5s\nb             10m\n");
    }
}
