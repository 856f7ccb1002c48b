//! `corral get` (with `--watch`) and `corral api-resources`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use corral_api::{DynamicObject, FieldSelector, KindInfo, Selector};
use futures::StreamExt;

use super::args::{GetArgs, OutputFormat};
use super::output::{self, Column, PrintedList, Table, now_unix, object_text, render_row};
use super::{Ctx, kind_word};
use corral_client::{ListParams, WatchEvent, WatchParams};

/// The kinds `get all` lists, in this order: what runs, then what makes it run (as
/// kubectl's `all` category: workloads, not configuration).
pub(crate) const ALL_KINDS: &[&str] = &["tasks", "services", "jobs", "jobruns"];

pub(crate) async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<u8> {
    if args.kind.eq_ignore_ascii_case("all") && !ctx.kinds().await?.iter().any(|k| k.matches_name("all")) {
        return get_all(ctx, &args).await;
    }
    let kind = ctx.resolve(&args.kind).await?;
    if let Some(sel) = &args.selector {
        Selector::parse(sel).map_err(|e| anyhow::anyhow!("{e}; see `corral get --help` for the syntax"))?;
    }
    if let Some(sel) = &args.field_selector {
        FieldSelector::parse(sel).map_err(|e| anyhow::anyhow!("{e}; see `corral get --help` for the syntax"))?;
    }
    if !args.names.is_empty() && (args.selector.is_some() || args.field_selector.is_some()) {
        anyhow::bail!("give names or selectors (-l, --field-selector), not both");
    }
    let namespace = scope(&kind, &args);
    let all_ns = kind.namespaced && namespace.is_none();
    let (objects, rv, failed) = if args.names.is_empty() {
        let list = ctx.client.list_all(&kind, namespace.as_deref(), &list_params(&args), args.chunk_size).await?;
        (list.items, list.metadata.resource_version, 0)
    } else {
        let mut objects = Vec::new();
        let mut failed = 0u32;
        for name in &args.names {
            match ctx.client.get(&kind, namespace.as_deref(), name).await {
                Ok(o) => objects.push(o),
                Err(e) if e.is_not_found() => {
                    failed += 1;
                    eprintln!("error: {}", not_found(&kind, name, namespace.as_deref()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        (objects, None, failed)
    };
    let cols = output::columns(&kind, all_ns, args.output == OutputFormat::Wide);
    if !args.watch {
        let mut out = std::io::stdout().lock();
        print_initial(&mut out, &kind, &args, &cols, &objects, rv, namespace.as_deref())?;
        return Ok(u8::from(failed > 0));
    }
    if objects.is_empty() && args.names.is_empty() {
        eprintln!("No {} found{}; watching for them.", kind.plural, place(&kind, namespace.as_deref()));
    }
    let mut printer = Printer::new(args.output, &kind, &cols);
    printer.start(&objects)?;
    watch(ctx, &kind, &args, namespace, printer, objects, rv).await
}

/// ` in namespace NS` for namespaced kinds listed in one namespace.
fn place(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!(" in namespace {ns}"),
        _ => String::new(),
    }
}

/// `get all`: each kind of [`ALL_KINDS`] that has objects, as its own table with
/// names as `kind/name`, a blank line between tables (as kubectl prints it).
async fn get_all(ctx: &Ctx, args: &GetArgs) -> anyhow::Result<u8> {
    if !args.names.is_empty() {
        anyhow::bail!("`get all` takes no names: name objects as `corral get KIND NAME`");
    }
    if args.watch {
        anyhow::bail!("`get all` cannot be watched: watch one kind, e.g. `corral get tasks -w`");
    }
    let mut printed = Vec::new();
    let mut everything = Vec::new();
    for plural in ALL_KINDS {
        // A server without one of these kinds (an older one) lists the others.
        let Some(kind) = ctx.kinds().await?.iter().find(|k| k.matches_name(plural)).map(|k| (**k).clone()) else {
            continue;
        };
        let namespace = scope(&kind, args);
        let list = ctx.client.list_all(&kind, namespace.as_deref(), &list_params(args), args.chunk_size).await?;
        if list.items.is_empty() {
            continue;
        }
        match args.output {
            OutputFormat::Table | OutputFormat::Wide => {
                let cols = output::columns(&kind, namespace.is_none(), args.output == OutputFormat::Wide);
                let mut table = output::object_table(&cols, &list.items, now_unix());
                if let Some(i) = cols.iter().position(|c| *c == Column::Name) {
                    for row in &mut table.rows {
                        row[i] = format!("{}/{}", kind_word(&kind), row[i]);
                    }
                }
                printed.push(table.render());
            }
            OutputFormat::Name => {
                printed.push(list.items.iter().map(|o| format!("{}\n", output::name_line(&kind, o))).collect());
            }
            OutputFormat::Yaml | OutputFormat::Json => everything.extend(list.items),
        }
    }
    match args.output {
        OutputFormat::Yaml => out!("{}", output::to_yaml(&PrintedList::new(&everything, None))?)?,
        OutputFormat::Json => out!("{}", output::to_json(&PrintedList::new(&everything, None))?)?,
        OutputFormat::Name => out!("{}", printed.concat())?,
        OutputFormat::Table | OutputFormat::Wide if printed.is_empty() => {
            let place = match args.ns.namespace.as_deref() {
                _ if args.all_namespaces => String::new(),
                ns => format!(" in namespace {}", ns.unwrap_or(super::args::DEFAULT_NAMESPACE)),
            };
            eprintln!("No resources found{place} (`get all` lists {}).", ALL_KINDS.join(", "));
        }
        OutputFormat::Table | OutputFormat::Wide => out!("{}", printed.join("\n"))?,
    }
    Ok(0)
}

/// The selectors of `args`; the pages are the pager's business.
fn list_params(args: &GetArgs) -> ListParams {
    ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        ..ListParams::default()
    }
}

/// The namespace to list in: none for cluster-scoped kinds and `-A`.
fn scope(kind: &KindInfo, args: &GetArgs) -> Option<String> {
    if !kind.namespaced || args.all_namespaces { None } else { Some(args.ns.or_default().to_string()) }
}

fn not_found(kind: &KindInfo, name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!(
            "{} {name:?} not found in namespace {ns:?}; list them with `corral get {} -n {ns}` (or -A for every namespace)",
            kind.kind, kind.plural
        ),
        _ => format!("{} {name:?} not found; list them with `corral get {}`", kind.kind, kind.plural),
    }
}

/// Prints what `get` shows when not watching.
fn print_initial(
    out: &mut impl Write,
    kind: &KindInfo,
    args: &GetArgs,
    cols: &[Column],
    objects: &[DynamicObject],
    rv: Option<String>,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    match args.output {
        OutputFormat::Table | OutputFormat::Wide => {
            if objects.is_empty() {
                if args.names.is_empty() {
                    eprintln!("No {} found{}.", kind.plural, place(kind, namespace));
                }
                return Ok(());
            }
            write!(out, "{}", output::object_table(cols, objects, now_unix()).render())?;
        }
        OutputFormat::Yaml | OutputFormat::Json => {
            let text = match (objects, args.names.len()) {
                ([one], 1) => object_text(args.output, kind, one, false)?,
                _ => {
                    let list = PrintedList::new(objects, rv);
                    if args.output == OutputFormat::Yaml { output::to_yaml(&list)? } else { output::to_json(&list)? }
                }
            };
            write!(out, "{text}")?;
        }
        OutputFormat::Name => {
            for o in objects {
                writeln!(out, "{}", output::name_line(kind, o))?;
            }
        }
    }
    Ok(())
}

type ObjKey = (Option<String>, String);

fn key(o: &DynamicObject) -> ObjKey {
    (o.metadata.namespace.clone(), o.metadata.name.clone())
}

/// The type of a watch event, as `kubectl get -w --output-watch-events` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A watch event as `-o json|yaml` prints it: the API's own watch-event shape.
#[derive(serde::Serialize)]
struct PrintedEvent<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    object: &'a DynamicObject,
}

/// Prints watched objects one event at a time. Tables get an EVENT column first; a
/// column whose value outgrows it widens and the header is printed again above the
/// row, so that what follows lines up; a row whose cells (but for AGE) are what was
/// last printed for that object is not printed again.
struct Printer<'a> {
    format: OutputFormat,
    kind: &'a KindInfo,
    cols: &'a [Column],
    /// Widths of the EVENT column and then of `cols`.
    widths: Vec<usize>,
    /// The cells last printed per object, AGE left out: AGE changes with the clock,
    /// not with the object.
    last: BTreeMap<ObjKey, Vec<String>>,
}

impl<'a> Printer<'a> {
    fn new(format: OutputFormat, kind: &'a KindInfo, cols: &'a [Column]) -> Self {
        Printer { format, kind, cols, widths: Vec::new(), last: BTreeMap::new() }
    }

    fn is_table(&self) -> bool {
        matches!(self.format, OutputFormat::Table | OutputFormat::Wide)
    }

    fn header(&self) -> Vec<String> {
        std::iter::once("EVENT").chain(self.cols.iter().map(Column::header)).map(str::to_string).collect()
    }

    /// The listed objects, as ADDED events; a table's header comes first and its
    /// widths fit these rows (the EVENT column fits every event type from the start).
    fn start(&mut self, objects: &[DynamicObject]) -> anyhow::Result<()> {
        if self.is_table() {
            let mut table = Table { headers: self.header(), rows: Vec::new() };
            table.rows.push(vec![EventType::Modified.as_str().to_string()]);
            let now = now_unix();
            for o in objects {
                let cells: Vec<String> = self.cols.iter().map(|c| c.cell(o, now)).collect();
                self.last.insert(key(o), self.compared(&cells));
                table.rows.push(std::iter::once(EventType::Added.as_str().to_string()).chain(cells).collect());
            }
            self.widths = table.widths();
            let mut text = render_row(&table.headers, &self.widths);
            for row in &table.rows[1..] {
                text.push_str(&render_row(row, &self.widths));
            }
            return self.write(&text);
        }
        for o in objects {
            self.print(EventType::Added, o)?;
        }
        Ok(())
    }

    fn compared(&self, cells: &[String]) -> Vec<String> {
        self.cols.iter().zip(cells).filter(|(c, _)| **c != Column::Age).map(|(_, cell)| cell.clone()).collect()
    }

    fn print(&mut self, event: EventType, o: &DynamicObject) -> anyhow::Result<()> {
        let text = match self.format {
            OutputFormat::Table | OutputFormat::Wide => {
                let cells: Vec<String> = self.cols.iter().map(|c| c.cell(o, now_unix())).collect();
                let compared = self.compared(&cells);
                if event == EventType::Deleted {
                    self.last.remove(&key(o));
                } else if self.last.get(&key(o)) == Some(&compared) {
                    return Ok(());
                } else {
                    self.last.insert(key(o), compared);
                }
                let row: Vec<String> = std::iter::once(event.as_str().to_string()).chain(cells).collect();
                let mut text = String::new();
                // The last column is never padded, so it may grow freely.
                let mut widened = false;
                for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                    let w = cell.chars().count();
                    if let Some(width) = self.widths.get_mut(i).filter(|width| w > **width) {
                        *width = w;
                        widened = true;
                    }
                }
                if widened {
                    text.push_str(&render_row(&self.header(), &self.widths));
                }
                text.push_str(&render_row(&row, &self.widths));
                text
            }
            OutputFormat::Json => {
                let mut line = serde_json::to_string(&PrintedEvent { type_: event.as_str(), object: o })?;
                line.push('\n');
                line
            }
            OutputFormat::Yaml => {
                format!("---\n{}", output::to_yaml(&PrintedEvent { type_: event.as_str(), object: o })?)
            }
            OutputFormat::Name => format!("{}\n", output::name_line(self.kind, o)),
        };
        self.write(&text)
    }

    fn write(&self, text: &str) -> anyhow::Result<()> {
        // Flushed per event: whoever reads a pipe sees each change as it happens.
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

/// What a watch needs to know about its scope.
struct Scope<'a> {
    kind: &'a KindInfo,
    namespace: Option<String>,
    params: ListParams,
    /// Objects per page of a (re-)list; 0: one request.
    chunk_size: u32,
    names: BTreeSet<String>,
}

impl Scope<'_> {
    fn wanted(&self, o: &DynamicObject) -> bool {
        self.names.is_empty() || self.names.contains(&o.metadata.name)
    }
}

/// Streams changes after the initial output until interrupted. A compacted revision
/// (410) means events were missed: re-list, print what differs from what was shown,
/// and watch again from the new list's revision.
async fn watch(
    ctx: &Ctx,
    kind: &KindInfo,
    args: &GetArgs,
    namespace: Option<String>,
    mut printer: Printer<'_>,
    objects: Vec<DynamicObject>,
    rv: Option<String>,
) -> anyhow::Result<u8> {
    let scope = Scope {
        kind,
        namespace,
        params: list_params(args),
        chunk_size: args.chunk_size,
        names: args.names.iter().cloned().collect(),
    };
    // The revision last shown of each object, so a re-list prints only real changes.
    let mut shown: BTreeMap<ObjKey, Option<String>> =
        objects.iter().map(|o| (key(o), o.metadata.resource_version.clone())).collect();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // Objects fetched by name come without a list revision: list to get one.
    let mut from = match rv {
        Some(rv) => rv,
        None => tokio::select! {
            r = relist(ctx, &scope, &mut shown, &mut printer) => r?,
            _ = &mut interrupted => return Ok(0),
        },
    };
    loop {
        let params = WatchParams {
            resource_version: Some(from.clone()),
            bookmarks: true,
            ..WatchParams::from_list(&scope.params)
        };
        let stream = tokio::select! {
            s = ctx.client.watch(kind, scope.namespace.as_deref(), &params) => s,
            _ = &mut interrupted => return Ok(0),
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) if e.is_gone() => {
                from = relist(ctx, &scope, &mut shown, &mut printer).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut received = false;
        loop {
            let next = tokio::select! {
                ev = stream.next() => ev,
                _ = &mut interrupted => return Ok(0),
            };
            // The server ended the watch (a restart, a timeout): resume where we were,
            // pausing first if it ended at once so that a refusing server is not spun on.
            let Some(ev) = next else {
                if !received {
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = &mut interrupted => return Ok(0),
                    }
                }
                break;
            };
            received = true;
            match ev? {
                WatchEvent::Added(o) | WatchEvent::Modified(o) if !scope.wanted(&o) => {
                    from = o.metadata.resource_version.clone().unwrap_or(from);
                }
                WatchEvent::Added(o) => {
                    from = o.metadata.resource_version.clone().unwrap_or(from);
                    shown.insert(key(&o), o.metadata.resource_version.clone());
                    printer.print(EventType::Added, &o)?;
                }
                WatchEvent::Modified(o) => {
                    from = o.metadata.resource_version.clone().unwrap_or(from);
                    shown.insert(key(&o), o.metadata.resource_version.clone());
                    printer.print(EventType::Modified, &o)?;
                }
                WatchEvent::Deleted(o) => {
                    from = o.metadata.resource_version.clone().unwrap_or(from);
                    if scope.wanted(&o) {
                        shown.remove(&key(&o));
                        printer.print(EventType::Deleted, &o)?;
                    }
                }
                WatchEvent::Bookmark { resource_version } => from = resource_version,
                WatchEvent::Error(status) if status.code == 410 => {
                    from = relist(ctx, &scope, &mut shown, &mut printer).await?;
                    break;
                }
                WatchEvent::Error(status) => {
                    let why = if status.message.is_empty() { status.reason } else { status.message };
                    anyhow::bail!("the watch failed: {why}; run the command again");
                }
            }
        }
    }
}

/// Lists again and prints objects new or changed since last shown; objects that
/// vanished meanwhile are named on stderr (their last state is unknown). Returns the
/// list's revision, to watch from.
async fn relist(
    ctx: &Ctx,
    scope: &Scope<'_>,
    shown: &mut BTreeMap<ObjKey, Option<String>>,
    printer: &mut Printer<'_>,
) -> anyhow::Result<String> {
    let list = ctx.client.list_all(scope.kind, scope.namespace.as_deref(), &scope.params, scope.chunk_size).await?;
    let mut seen = BTreeSet::new();
    for o in list.items.iter().filter(|o| scope.wanted(o)) {
        let k = key(o);
        seen.insert(k.clone());
        match shown.insert(k, o.metadata.resource_version.clone()) {
            None => printer.print(EventType::Added, o)?,
            Some(rv) if rv != o.metadata.resource_version => printer.print(EventType::Modified, o)?,
            Some(_) => {}
        }
    }
    let gone: Vec<ObjKey> = shown.keys().filter(|k| !seen.contains(*k)).cloned().collect();
    for k in gone {
        shown.remove(&k);
        match k {
            (Some(ns), name) => eprintln!("{}/{name} in namespace {ns} was deleted", kind_word(scope.kind)),
            (None, name) => eprintln!("{}/{name} was deleted", kind_word(scope.kind)),
        }
    }
    list.metadata
        .resource_version
        .ok_or_else(|| anyhow::anyhow!("the server's list has no metadata.resourceVersion to watch from"))
}

pub(crate) async fn api_resources(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut kinds = ctx.kinds().await?.to_vec();
    kinds.sort_by(|a, b| (&a.plural, &a.group).cmp(&(&b.plural, &b.group)));
    let mut t = Table::new(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for k in &kinds {
        t.rows.push(vec![
            k.plural.clone(),
            k.short_names.join(","),
            k.api_version(),
            k.namespaced.to_string(),
            k.kind.clone(),
        ]);
    }
    out!("{}", t.render())?;
    Ok(0)
}
