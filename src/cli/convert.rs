//! `corral convert marathon`: Marathon app definitions (JSON) as `Service` manifests.
//!
//! What Corral can carry is converted field by field. Each field it cannot carry is
//! named on stderr with why (`warning: FILE: field `X`: not converted: ...`), and so is
//! each value changed on the way (names made RFC 1123 labels, label values made valid,
//! memory rounded to whole MiB); `note:` lines say what to do besides applying. Fields
//! left at their empty value, and the state Marathon adds to the apps it returns
//! (`version`, `tasksRunning`, `deployments`, ...), are skipped quietly.
//!
//! Where Marathon has a default that differs from Corral's (1 CPU and 128 MiB per task;
//! health checks' 300 s grace period and 60 s interval; readiness checks' 30 s
//! interval), the converted service says Marathon's value, so that it behaves as the
//! app did.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use corral_api::kinds::node::Resources;
use corral_api::kinds::service::{
    Backoff, CONSTRAINT_OPERATORS, Constraint, KillSelection, ReadinessCheck, Service, ServiceSpec,
    UnreachableStrategy, UpgradeStrategy,
};
use corral_api::kinds::task::{Artifact, HealthCheck, HttpCheck, TaskPort, TaskSpec, TcpCheck};
use corral_api::names::{check_label_value, check_qualified_key};
use serde_json::{Map, Value};

use super::args::{ConvertCommand, ConvertMarathonArgs, ManifestFormat};

mod metronome;
use super::output::{to_json, to_yaml};

pub(crate) fn run(cmd: ConvertCommand) -> anyhow::Result<u8> {
    match cmd {
        ConvertCommand::Marathon(args) => marathon(&args),
        ConvertCommand::Metronome(args) => metronome::run(&args),
    }
}

fn marathon(args: &ConvertMarathonArgs) -> anyhow::Result<u8> {
    let (source, text) = read(&args.file)?;
    let conversion = convert_marathon(&source, &text).map_err(anyhow::Error::msg)?;
    print(args.output, &conversion.objects, &conversion.messages)
}

/// Prints converted `objects` on stdout in `format` — one YAML document each, or
/// JSON (a `List` for several) — and the `messages` about them on stderr.
fn print<T: serde::Serialize>(format: ManifestFormat, objects: &[T], messages: &[String]) -> anyhow::Result<u8> {
    let text = match (format, objects) {
        (ManifestFormat::Yaml, all) => all.iter().map(to_yaml).collect::<anyhow::Result<Vec<_>>>()?.join("---\n"),
        (ManifestFormat::Json, [one]) => to_json(one)?,
        (ManifestFormat::Json, all) => to_json(&serde_json::json!({
            "apiVersion": corral_api::API_VERSION,
            "kind": "List",
            "items": all,
        }))?,
    };
    out!("{text}")?;
    for line in messages {
        eprintln!("{line}");
    }
    Ok(0)
}

/// `text`, read from `source`, as JSON; else an error naming the file, line and
/// column.
fn parse_json(source: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&message);
        let message = if e.is_eof() { "the file ends before the JSON does" } else { message };
        format!("{source}:{}:{}: not valid JSON: {message}", e.line(), e.column().max(1))
    })
}

/// The file's name as messages show it, and its text.
fn read(path: &Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read stdin")?;
        return Ok(("<stdin>".to_string(), text));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Objects converted from one file — one per definition, in file order — and the
/// warnings and notes about them, one line each, in the order of the fields.
#[derive(Debug)]
pub(crate) struct Conversion<T> {
    /// The converted objects.
    pub(crate) objects: Vec<T>,
    /// `warning: ...` and `note: ...` lines.
    pub(crate) messages: Vec<String>,
}

/// Converts the Marathon JSON `text`, read from `source`: an app, `{"app": {...}}` (as
/// `GET /v2/apps/ID` answers), a group or `{"apps": [...]}` (groups nested in it
/// too), or a list of any of these.
///
/// # Errors
/// What is wrong, starting with `source`: text that is not JSON (with line and
/// column), JSON that is not an app, an app whose id names nothing.
pub(crate) fn convert_marathon(source: &str, text: &str) -> Result<Conversion<Service>, String> {
    let value = parse_json(source, text)?;
    let mut found = Vec::new();
    let mut messages = Vec::new();
    find_apps(source, &value, "", "/", &mut found, &mut messages).map_err(|why| {
        format!(
            "{source}: not a Marathon app definition: {why}; expected an app ({{\"id\": \"/web\", \"cmd\": ...}}), \
             a group ({{\"apps\": [...]}}) or a list of apps"
        )
    })?;
    if found.is_empty() {
        return Err(format!("{source}: no apps found: the group's `apps` (and its groups') are empty"));
    }
    let mut services = Vec::new();
    for f in found {
        let mut app = App { source, at: f.at, fields: f.app.clone(), messages: &mut messages };
        services.push(app.convert(&f.id)?);
    }
    Ok(Conversion { objects: services, messages })
}

/// An app found in the file.
struct Found<'a> {
    /// Where it is, as a prefix of field paths: `""`, `apps[0].`, `groups[1].apps[0].`.
    at: String,
    /// Its absolute id, relative ids resolved against their groups.
    id: String,
    app: &'a Map<String, Value>,
}

/// Collects the apps in `v`, found at `at` inside a group with id `group`. Fails with
/// why `v` is no app.
fn find_apps<'a>(
    source: &str,
    v: &'a Value,
    at: &str,
    group: &str,
    out: &mut Vec<Found<'a>>,
    messages: &mut Vec<String>,
) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_apps(source, item, &format!("{at}[{i}]."), group, out, messages)?;
            }
            Ok(())
        }
        Value::Object(o) if o.len() == 1 && o.get("app").is_some_and(Value::is_object) => {
            find_apps(source, &o["app"], &format!("{at}app."), group, out, messages)
        }
        Value::Object(o) if o.contains_key("apps") || o.contains_key("groups") => {
            let id = match o.get("id") {
                Some(Value::String(id)) => absolute_id(group, id),
                _ => group.to_string(),
            };
            for (k, v) in o {
                let items = match (k.as_str(), v) {
                    ("apps" | "groups", Value::Array(items)) => items,
                    ("apps" | "groups", Value::Null) => continue,
                    ("apps" | "groups", _) => return Err(format!("`{at}{k}` is not a list")),
                    ("id" | "version" | "versions", _) => continue,
                    (_, v) if is_unset(v) => continue,
                    ("pods", _) => {
                        messages.push(skipped(source, &format!("{at}pods"), "pods are not converted, only apps"));
                        continue;
                    }
                    _ => {
                        messages.push(skipped(source, &format!("{at}{k}"), "groups have no equivalent in Corral"));
                        continue;
                    }
                };
                for (i, item) in items.iter().enumerate() {
                    let place = format!("{at}{k}[{i}].");
                    let Value::Object(member) = item else {
                        return Err(format!("`{place}` is not an object"));
                    };
                    if k == "groups" {
                        find_apps(source, item, &place, &id, out, messages)?;
                    } else if let Some(Value::String(app_id)) = member.get("id") {
                        out.push(Found { at: place, id: absolute_id(&id, app_id), app: member });
                    } else {
                        return Err(format!("the app at `{place}` has no `id`"));
                    }
                }
            }
            Ok(())
        }
        Value::Object(o) => match o.get("id") {
            Some(Value::String(id)) => {
                out.push(Found { at: at.to_string(), id: absolute_id(group, id), app: o });
                Ok(())
            }
            Some(_) => Err(format!("`{at}id` is not a string")),
            None => Err(format!("`{at}id` is missing")),
        },
        other => match at.strip_suffix('.') {
            Some(place) => Err(format!("`{place}` is {}, not an object", json_type(other))),
            None => Err(format!("the JSON is {}, not an object", json_type(other))),
        },
    }
}

/// `id` resolved against the group `group`, as Marathon does: `/a/b`, or `b` in `/a`.
fn absolute_id(group: &str, id: &str) -> String {
    let base = if id.starts_with('/') { "" } else { group };
    let mut segments: Vec<&str> = Vec::new();
    for s in base.split('/').chain(id.split('/')) {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Fields Marathon writes into the apps it returns: state, not definition.
const MARATHON_STATE: &[&str] = &[
    "version",
    "versionInfo",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "tasks",
    "lastTaskFailure",
    "taskStats",
    "readinessCheckResults",
];

/// Marathon's defaults for what its apps leave out, where they differ from Corral's.
mod marathon_default {
    pub const CPUS: f64 = 1.0;
    pub const MEM: f64 = 128.0;
    pub const HEALTH_GRACE: u32 = 300;
    pub const HEALTH_INTERVAL: u32 = 60;
    pub const HEALTH_TIMEOUT: u32 = 20;
    pub const HEALTH_MAX_FAILURES: u32 = 3;
    pub const HEALTH_DELAY: u64 = 15;
    pub const READY_INTERVAL: u32 = 30;
    pub const READY_TIMEOUT: u32 = 10;
    pub const READY_PORT_NAME: &str = "http-api";
}

/// `warning: FILE: field `F`: not converted: WHY`.
fn skipped(source: &str, field: &str, why: impl Display) -> String {
    format!("warning: {source}: field `{field}`: not converted: {why}")
}

/// Null, false, 0, "", [] and {}: what a field left at its empty value holds.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `s` made an RFC 1123 label: lowercase, other characters `-`, at most 63, starting
/// and ending with a letter or digit. Empty if nothing is left.
fn dns_label(s: &str) -> String {
    let mapped: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let trimmed = mapped.trim_matches('-');
    trimmed.chars().take(63).collect::<String>().trim_end_matches('-').to_string()
}

/// `s` made a label value (or the name part of a key): letters, digits, `-`, `_` and
/// `.`, at most 63, starting and ending with a letter or digit.
fn label_value(s: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mapped: String = s.chars().map(|c| if ok(c) { c } else { '-' }).collect();
    let edge = |c: char| !c.is_ascii_alphanumeric();
    mapped.trim_matches(edge).chars().take(63).collect::<String>().trim_end_matches(edge).to_string()
}

/// `s` quoted, cut to a length messages can carry.
fn shown(s: &str) -> String {
    if s.chars().count() > 60 { format!("{:?}…", s.chars().take(57).collect::<String>()) } else { format!("{s:?}") }
}

/// A whole number, written as one (or as `60.0`).
fn whole(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64).map(|f| f as u64))
}

/// Variables Marathon (or Mesos) sets in a task's environment that Corral's agent does
/// not, and what to use instead.
fn unset_variable(name: &str) -> Option<&'static str> {
    match name {
        "PORTS" => Some("use $PORT0, $PORT1, ... or $PORT_<NAME>"),
        "MESOS_SANDBOX" => Some("use $CORRAL_SANDBOX"),
        "MESOS_TASK_ID" => Some("use $CORRAL_TASK_ID"),
        n if n.starts_with("MARATHON_") || n.starts_with("MESOS_") => Some("Corral does not set it"),
        _ => None,
    }
}

/// The variables `$NAME`, `${NAME}` and `$(NAME)` in `text` that Corral does not set.
fn unset_variables(text: &str) -> Vec<(&str, &'static str)> {
    let bytes = text.as_bytes();
    let mut found: Vec<(&str, &'static str)> = Vec::new();
    let mut i = 0;
    while let Some(offset) = text[i..].find('$') {
        let mut j = i + offset + 1;
        if matches!(bytes.get(j), Some(b'{' | b'(')) {
            j += 1;
        }
        let start = j;
        while bytes.get(j).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            j += 1;
        }
        let name = &text[start..j];
        if let Some(advice) = unset_variable(name)
            && !found.iter().any(|(n, _)| *n == name)
        {
            found.push((name, advice));
        }
        i = j;
    }
    found
}

/// Reads JSON fields of a definition into typed values; a value of the wrong type
/// is reported through [`Fields::skip`] (the field is then not converted).
trait Fields {
    /// The file's name, as messages show it.
    fn source(&self) -> &str;
    /// Prefix of the definition's field paths in the file.
    fn at(&self) -> &str;
    /// Keeps a `warning:` or `note:` line.
    fn report(&mut self, line: String);

    fn path(&self, field: &str) -> String {
        format!("{}{field}", self.at())
    }

    /// Names `field` as not converted, with why.
    fn skip(&mut self, field: &str, why: impl Display) {
        let line = skipped(self.source(), &self.path(field), why);
        self.report(line);
    }

    /// Reports that `field` was converted with a change.
    fn changed(&mut self, field: &str, what: impl Display) {
        let line = format!("warning: {}: field `{}`: {what}", self.source(), self.path(field));
        self.report(line);
    }

    /// Tells what to do about `field` besides applying.
    fn note(&mut self, field: &str, what: impl Display) {
        let line = format!("note: {}: field `{}`: {what}", self.source(), self.path(field));
        self.report(line);
    }

    fn string(&mut self, field: &str, v: Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.skip(field, format!("expected a string, found {}", json_type(&other)));
                None
            }
        }
    }

    fn number(&mut self, field: &str, v: &Value) -> Option<f64> {
        let n = v.as_f64().filter(|n| *n >= 0.0);
        if n.is_none() {
            self.skip(field, format!("expected a number of at least 0, found {v}"));
        }
        n
    }

    fn count<T: TryFrom<u64>>(&mut self, field: &str, v: &Value) -> Option<T> {
        let n = whole(v).and_then(|n| T::try_from(n).ok());
        if n.is_none() {
            self.skip(field, format!("expected a whole number in range, found {v}"));
        }
        n
    }

    fn boolean(&mut self, field: &str, v: &Value) -> Option<bool> {
        let b = v.as_bool();
        if b.is_none() {
            self.skip(field, format!("expected true or false, found {v}"));
        }
        b
    }

    fn list(&mut self, field: &str, v: Value) -> Vec<Value> {
        match v {
            Value::Array(items) => items,
            other => {
                self.skip(field, format!("expected a list, found {}", json_type(&other)));
                Vec::new()
            }
        }
    }

    fn object(&mut self, field: &str, v: Value) -> Option<Map<String, Value>> {
        match v {
            Value::Object(o) => Some(o),
            other => {
                self.skip(field, format!("expected an object, found {}", json_type(&other)));
                None
            }
        }
    }

    /// MiB rounded up to a whole number, as Corral counts them.
    fn mib(&mut self, field: &str, n: f64) -> u64 {
        let whole = n.ceil();
        if whole != n {
            self.changed(field, format!("{n} became {whole} MiB: Corral counts whole MiB"));
        }
        whole as u64
    }

    /// `cmd` (run by `/bin/sh -c`, as Mesos does) and `args` into `task`; `at`
    /// prefixes their field paths, `one` names the definition ("an app", "a job").
    fn command(&mut self, cmd: Option<Value>, args: Option<Value>, at: &str, one: &str, task: &mut TaskSpec) {
        let cmd = cmd.and_then(|v| self.string(&format!("{at}cmd"), v));
        if let Some(cmd) = cmd.filter(|c| !c.is_empty()) {
            task.command = vec!["/bin/sh".into(), "-c".into(), cmd];
        }
        let Some(args) = args else { return };
        let mut out = Vec::new();
        for (i, a) in self.list(&format!("{at}args"), args).into_iter().enumerate() {
            if let Some(s) = self.string(&format!("{at}args[{i}]"), a) {
                out.push(s);
            }
        }
        if !task.command.is_empty() && !out.is_empty() {
            self.skip(&format!("{at}args"), format!("{one} has cmd or args, not both; cmd was converted"));
        } else {
            task.args = out;
        }
    }

    /// Reports variables the command (`sh -c CMD`), arguments and environment of
    /// `task` use that Corral does not set; `at` prefixes their field paths.
    fn variables(&mut self, task: &TaskSpec, at: &str) {
        let mut texts: Vec<(String, &str)> = Vec::new();
        if let Some(cmd) = task.command.get(2) {
            texts.push((format!("{at}cmd"), cmd));
        }
        texts.extend(task.args.iter().enumerate().map(|(i, a)| (format!("{at}args[{i}]"), a.as_str())));
        texts.extend(task.env.iter().map(|(k, v)| (format!("{at}env.{k}"), v.as_str())));
        for (field, text) in texts {
            for (name, advice) in unset_variables(text) {
                if !task.env.contains_key(name) {
                    self.changed(&field, format!("${name} is not set by Corral: {advice}"));
                }
            }
        }
    }

    /// Reports what is left of `rest`, a nested object at `field`, that holds a value.
    fn leftovers(&mut self, field: &str, rest: Map<String, Value>) {
        for (k, v) in rest {
            if !is_unset(&v) {
                self.skip(&format!("{field}.{k}"), "Corral has no equivalent");
            }
        }
    }

    /// `labels`, keys and values made valid where they are not.
    fn labels(&mut self, v: Option<Value>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(labels) = v.and_then(|v| self.object("labels", v)) else { return out };
        for (k, v) in labels {
            let field = format!("labels.{k}");
            let Some(v) = self.string(&field, v) else { continue };
            let key = if check_qualified_key(&k).is_ok() {
                k.clone()
            } else {
                let key = label_value(&k);
                if key.is_empty() {
                    self.skip(&field, "the key cannot be made a label key (letters, digits, '-', '_' and '.')");
                    continue;
                }
                self.changed(
                    &field,
                    format!("the key became {key:?}: label keys are at most 63 letters, digits, '-', '_' and '.'"),
                );
                key
            };
            let value = if check_label_value(&v).is_ok() {
                v
            } else {
                let value = label_value(&v);
                self.changed(
                    &field,
                    format!(
                        "the value {} became {value:?}: label values are at most 63 letters, digits, '-', '_' and '.'",
                        shown(&v)
                    ),
                );
                value
            };
            out.insert(key, value);
        }
        out
    }
}

/// Converting one app: its fields are taken out of `fields` as they are converted;
/// what is left is reported.
struct App<'a> {
    source: &'a str,
    /// Prefix of the app's field paths in the file.
    at: String,
    fields: Map<String, Value>,
    messages: &'a mut Vec<String>,
}

/// A port as converted, with what checks need to find it.
struct Port {
    /// The name Marathon gave it, if any.
    marathon_name: Option<String>,
    port: TaskPort,
}

impl Fields for App<'_> {
    fn source(&self) -> &str {
        self.source
    }

    fn at(&self) -> &str {
        &self.at
    }

    fn report(&mut self, line: String) {
        self.messages.push(line);
    }
}

impl App<'_> {
    /// Takes the top-level field `key`, unless absent or null.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.fields.remove(key).filter(|v| !v.is_null())
    }

    fn convert(&mut self, id: &str) -> Result<Service, String> {
        self.fields.remove("id");
        let (name, namespace) = self.name(id)?;
        let mut spec = ServiceSpec { instances: 1, ..ServiceSpec::default() };
        let mut template = TaskSpec::default();
        if let Some(v) = self.take("instances") {
            spec.instances = self.count("instances", &v).unwrap_or(1);
        }
        let (cmd, args) = (self.take("cmd"), self.take("args"));
        self.command(cmd, args, "", "an app", &mut template);
        let mappings = self.container(&mut template);
        let ports = self.ports(mappings);
        template.ports = ports.iter().map(|p| p.port.clone()).collect();
        template.resources = self.resources();
        template.env = self.env();
        template.health_checks = self.health_checks(&ports);
        spec.readiness_check = self.readiness(&ports);
        template.artifacts = self.artifacts();
        if let Some(v) = self.take("user") {
            template.user = self.string("user", v);
        }
        if let Some(v) = self.take("taskKillGracePeriodSeconds") {
            template.kill_grace_period_seconds = self.count("taskKillGracePeriodSeconds", &v);
        }
        if let Some(v) = self.take("role") {
            spec.role = self.string("role", v).filter(|r| r != "*");
        }
        spec.constraints = self.constraints();
        spec.upgrade_strategy = self.upgrade_strategy();
        spec.backoff = self.backoff();
        spec.kill_selection = self.kill_selection();
        spec.unreachable_strategy = self.unreachable_strategy();
        let labels = self.take("labels");
        let labels = self.labels(labels);
        self.variables(&template, "");
        spec.template = template;
        self.rest();
        let mut service = Service::new(name, spec);
        service.metadata.namespace = namespace;
        service.metadata.labels = labels;
        Ok(service)
    }

    /// The service's name (the id's last segment) and namespace (its groups).
    fn name(&mut self, id: &str) -> Result<(String, Option<String>), String> {
        let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
        let Some((last, groups)) = segments.split_last() else {
            return Err(format!("{}: field `{}`: the id {id:?} names no app", self.source, self.path("id")));
        };
        let name = dns_label(last);
        if name.is_empty() {
            return Err(format!(
                "{}: field `{}`: {last:?} cannot be made a name (an RFC 1123 label: lowercase letters, digits \
                 and '-'); rename the app",
                self.source,
                self.path("id")
            ));
        }
        if name != *last {
            self.changed("id", format!("{last:?} became the name {name:?}: names are RFC 1123 labels"));
        }
        if groups.is_empty() {
            return Ok((name, None));
        }
        let group = format!("/{}", groups.join("/"));
        let namespace = dns_label(&groups.join("-"));
        if namespace.is_empty() {
            self.skip("id", format!("the group {group} cannot be made a namespace name; give one with -n"));
            return Ok((name, None));
        }
        self.note(
            "id",
            format!(
                "the group {group} became the namespace {namespace:?}, which must exist before the service is applied"
            ),
        );
        Ok((name, Some(namespace)))
    }

    /// `container`: the image; returns the port mappings (of the container, and of
    /// its Docker section as older apps have them), with the field each came from.
    fn container(&mut self, template: &mut TaskSpec) -> Vec<(String, Value)> {
        let mut mappings = Vec::new();
        let Some(c) = self.take("container") else { return mappings };
        let Some(mut c) = self.object("container", c) else { return mappings };
        c.remove("type");
        if let Some(docker) = c.remove("docker").filter(|v| !v.is_null())
            && let Some(mut docker) = self.object("container.docker", docker)
        {
            if let Some(image) = docker.remove("image").and_then(|v| self.string("container.docker.image", v)) {
                self.note(
                    "container.docker.image",
                    format!(
                        "Corral pulls from no registry: import {image:?} on each node with `corral image import` \
                         (names as `corral image ls` lists them)"
                    ),
                );
                template.image = Some(image);
            }
            match docker.remove("network").as_ref().and_then(Value::as_str) {
                None | Some("HOST") => {}
                Some(other) => self.skip(
                    "container.docker.network",
                    format!("{other}: tasks share the host's network; the task must listen on its host ports"),
                ),
            }
            if let Some(Value::Array(items)) = docker.remove("portMappings") {
                mappings.extend(
                    items.into_iter().enumerate().map(|(i, m)| (format!("container.docker.portMappings[{i}]"), m)),
                );
            }
            if docker.remove("privileged").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("container.docker.privileged", "Corral runs no privileged containers");
            }
            if docker.remove("forcePullImage").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip(
                    "container.docker.forcePullImage",
                    "images are imported with `corral image import`, not pulled",
                );
            }
            if docker.remove("parameters").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("container.docker.parameters", "tasks run in runc, not Docker: Docker options do not apply");
            }
            if docker.remove("pullConfig").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("container.docker.pullConfig", "images are imported with `corral image import`, not pulled");
            }
            self.leftovers("container.docker", docker);
        }
        if let Some(Value::Array(items)) = c.remove("portMappings") {
            mappings.extend(items.into_iter().enumerate().map(|(i, m)| (format!("container.portMappings[{i}]"), m)));
        }
        if c.remove("volumes").as_ref().is_some_and(|v| !is_unset(v)) {
            self.skip(
                "container.volumes",
                "Corral mounts node-local named volumes (spec.template.volumeMounts); add them by hand",
            );
        }
        self.leftovers("container", c);
        mappings
    }

    /// The ports: the container's port mappings if it has any, else `portDefinitions`,
    /// else the legacy `ports`.
    fn ports(&mut self, mappings: Vec<(String, Value)>) -> Vec<Port> {
        let require = match self.take("requirePorts") {
            Some(v) => self.boolean("requirePorts", &v).unwrap_or(false),
            None => false,
        };
        let definitions = self.take("portDefinitions").map(|v| self.list("portDefinitions", v)).unwrap_or_default();
        let legacy = self.take("ports").map(|v| self.list("ports", v)).unwrap_or_default();
        let mut ports: Vec<Port> = Vec::new();
        if !mappings.is_empty() {
            if !definitions.is_empty() {
                self.skip(
                    "portDefinitions",
                    "the container's portMappings were converted instead, as Marathon uses them",
                );
            }
            for (field, m) in mappings {
                self.mapping(&field, m, &mut ports);
            }
        } else if !definitions.is_empty() {
            for (i, d) in definitions.into_iter().enumerate() {
                self.definition(&format!("portDefinitions[{i}]"), d, require, &mut ports);
            }
        } else {
            for (i, p) in legacy.into_iter().enumerate() {
                let d = Value::Object(Map::from_iter([("port".to_string(), p)]));
                self.definition(&format!("ports[{i}]"), d, require, &mut ports);
            }
        }
        ports
    }

    /// One of `portDefinitions`: `port` is the host port when `requirePorts`, else a
    /// service port (which Corral does not have).
    fn definition(&mut self, field: &str, d: Value, require: bool, ports: &mut Vec<Port>) {
        let Some(mut d) = self.object(field, d) else { return };
        let number = d.remove("port").and_then(|v| self.count::<u16>(&format!("{field}.port"), &v)).unwrap_or(0);
        let host_port = if number == 0 {
            None
        } else if require {
            Some(number)
        } else {
            self.skip(
                &format!("{field}.port"),
                format!(
                    "service port {number}: Corral has no service ports; the host port is picked from the offer \
                     (give hostPort for a fixed one, as requirePorts did)"
                ),
            );
            None
        };
        self.port(field, d, host_port, ports);
    }

    /// One of the container's `portMappings`.
    fn mapping(&mut self, field: &str, m: Value, ports: &mut Vec<Port>) {
        let Some(mut m) = self.object(field, m) else { return };
        let host_port = m.remove("hostPort").and_then(|v| self.count::<u16>(&format!("{field}.hostPort"), &v));
        let host_port = host_port.filter(|p| *p != 0);
        if let Some(v) = m.remove("containerPort")
            && let Some(container) = self.count::<u16>(&format!("{field}.containerPort"), &v)
            && container != 0
            && Some(container) != host_port
        {
            let index = ports.len();
            self.skip(
                &format!("{field}.containerPort"),
                format!(
                    "tasks share the host's network, so the task must listen on its host port ($PORT{index}), \
                     not on {container}"
                ),
            );
        }
        if let Some(v) = m.remove("servicePort")
            && let Some(service) = self.count::<u16>(&format!("{field}.servicePort"), &v)
            && service != 0
        {
            self.skip(&format!("{field}.servicePort"), format!("service port {service}: Corral has no service ports"));
        }
        m.remove("networkNames");
        self.port(field, m, host_port, ports);
    }

    /// What port definitions and mappings share: name, protocol, labels.
    fn port(&mut self, field: &str, mut d: Map<String, Value>, host_port: Option<u16>, ports: &mut Vec<Port>) {
        let index = ports.len();
        let marathon_name = d.remove("name").and_then(|v| self.string(&format!("{field}.name"), v));
        let mut name = marathon_name.as_deref().map(dns_label).filter(|n| !n.is_empty());
        if let (Some(given), Some(n)) = (&marathon_name, &name)
            && given != n
        {
            self.changed(&format!("{field}.name"), format!("{given:?} became {n:?}: port names are RFC 1123 labels"));
        }
        if name.as_ref().is_some_and(|n| ports.iter().any(|p| p.port.name == *n)) {
            let unique = format!("{}-{index}", name.unwrap_or_default());
            self.changed(&format!("{field}.name"), format!("became {unique:?}: another port has the same name"));
            name = Some(unique);
        }
        let name = name.unwrap_or_else(|| {
            let mut generated = format!("port{index}");
            while ports.iter().any(|p| p.port.name == generated) {
                generated.push('x');
            }
            generated
        });
        let protocol = match d.remove("protocol").as_ref().and_then(Value::as_str) {
            None | Some("tcp") => None,
            Some("udp") => Some("udp".to_string()),
            Some(other) => {
                self.changed(&format!("{field}.protocol"), format!("{other:?} became \"tcp\": a port is tcp or udp"));
                None
            }
        };
        if d.remove("labels").as_ref().is_some_and(|v| !is_unset(v)) {
            self.skip(&format!("{field}.labels"), "ports have no labels in Corral");
        }
        self.leftovers(field, d);
        ports.push(Port { marathon_name, port: TaskPort { name, host_port, protocol } });
    }

    /// `cpus`, `mem`, `disk`, with Marathon's defaults; `gpus` is reported.
    fn resources(&mut self) -> Resources {
        let cpus = self.take("cpus").and_then(|v| self.number("cpus", &v)).unwrap_or(marathon_default::CPUS);
        let mem = self.take("mem").and_then(|v| self.number("mem", &v)).unwrap_or(marathon_default::MEM);
        let disk = self.take("disk").and_then(|v| self.number("disk", &v)).unwrap_or(0.0);
        if let Some(gpus) = self.take("gpus").filter(|v| !is_unset(v)) {
            self.skip("gpus", format!("{gpus}: Corral offers no GPUs"));
        }
        Resources { cpus, mem: self.mib("mem", mem), disk: self.mib("disk", disk) }
    }

    /// `env`: plain values; secret references are reported.
    fn env(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(env) = self.take("env").and_then(|v| self.object("env", v)) else { return out };
        for (k, v) in env {
            let value = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Object(o) if o.contains_key("secret") => {
                    self.skip(
                        &format!("env.{k}"),
                        "a secret reference, and Corral has no secrets; set the variable by hand",
                    );
                    continue;
                }
                other => {
                    self.skip(&format!("env.{k}"), format!("expected a string, found {}", json_type(&other)));
                    continue;
                }
            };
            out.insert(k, value);
        }
        out
    }

    /// The port a check names by `portIndex` (default 0) or `port`: (port name, port
    /// number); `None` after reporting when it names no port.
    fn check_port(
        &mut self,
        field: &str,
        hc: &mut Map<String, Value>,
        ports: &[Port],
    ) -> Option<(Option<String>, Option<u16>)> {
        if let Some(v) = hc.remove("port").filter(|v| !is_unset(v)) {
            hc.remove("portIndex");
            return self.count::<u16>(&format!("{field}.port"), &v).map(|p| (None, Some(p)));
        }
        let index = match hc.remove("portIndex").filter(|v| !v.is_null()) {
            Some(v) => self.count::<usize>(&format!("{field}.portIndex"), &v)?,
            None => 0,
        };
        match ports.get(index) {
            Some(p) => Some((Some(p.port.name.clone()), None)),
            None => {
                let have = ports.len();
                self.skip(field, format!("its portIndex {index} names no port (the app has {have})"));
                None
            }
        }
    }

    /// `healthChecks`, with Marathon's defaults for timing.
    fn health_checks(&mut self, ports: &[Port]) -> Vec<HealthCheck> {
        let mut out = Vec::new();
        let Some(checks) = self.take("healthChecks") else { return out };
        for (i, hc) in self.list("healthChecks", checks).into_iter().enumerate() {
            let field = format!("healthChecks[{i}]");
            let Some(mut hc) = self.object(&field, hc) else { continue };
            let protocol = hc.remove("protocol").and_then(|v| v.as_str().map(str::to_string));
            let mut check = HealthCheck::default();
            match protocol.as_deref().unwrap_or("HTTP") {
                "HTTP" | "MESOS_HTTP" => {
                    let Some((port_name, port)) = self.check_port(&field, &mut hc, ports) else { continue };
                    let path = hc.remove("path").and_then(|v| self.string(&format!("{field}.path"), v));
                    check.http = Some(HttpCheck { port_name, port, path });
                }
                "TCP" | "MESOS_TCP" => {
                    let Some((port_name, port)) = self.check_port(&field, &mut hc, ports) else { continue };
                    hc.remove("path");
                    check.tcp = Some(TcpCheck { port_name, port });
                }
                "COMMAND" => {
                    let value = hc.remove("command").and_then(|c| match c {
                        Value::Object(mut c) => c.remove("value").and_then(|v| v.as_str().map(str::to_string)),
                        Value::String(s) => Some(s),
                        _ => None,
                    });
                    let Some(value) = value.filter(|v| !v.is_empty()) else {
                        self.skip(&field, "a COMMAND check without command.value");
                        continue;
                    };
                    check.command = Some(vec!["/bin/sh".into(), "-c".into(), value]);
                    for k in ["path", "portIndex", "port"] {
                        hc.remove(k);
                    }
                }
                other => {
                    let why = if other.ends_with("HTTPS") {
                        "HTTPS checks are not supported (Corral's HTTP checks speak plain HTTP); use a TCP or \
                         command check"
                            .to_string()
                    } else {
                        format!("unknown protocol {other:?}")
                    };
                    self.skip(&field, why);
                    continue;
                }
            }
            let mut timing = |app: &mut Self, key: &str, default: u32| -> Option<u32> {
                match hc.remove(key).filter(|v| !v.is_null()) {
                    Some(v) => app.count(&format!("{field}.{key}"), &v),
                    None => Some(default),
                }
            };
            check.grace_period_seconds = timing(self, "gracePeriodSeconds", marathon_default::HEALTH_GRACE);
            check.interval_seconds = timing(self, "intervalSeconds", marathon_default::HEALTH_INTERVAL);
            check.timeout_seconds = timing(self, "timeoutSeconds", marathon_default::HEALTH_TIMEOUT);
            check.max_consecutive_failures =
                timing(self, "maxConsecutiveFailures", marathon_default::HEALTH_MAX_FAILURES);
            if check.max_consecutive_failures == Some(0) {
                self.skip(
                    &format!("{field}.maxConsecutiveFailures"),
                    "0 (never kill) is not supported: Corral kills a task after failures; the default 3 applies",
                );
                check.max_consecutive_failures = None;
            }
            if let Some(delay) = hc.remove("delaySeconds").as_ref().and_then(whole)
                && delay != marathon_default::HEALTH_DELAY
            {
                self.skip(&format!("{field}.delaySeconds"), "checks start after the grace period; there is no delay");
            }
            if hc.remove("ignoreHttp1xx").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip(&format!("{field}.ignoreHttp1xx"), "a 1xx answer fails an HTTP check");
            }
            self.leftovers(&field, hc);
            out.push(check);
        }
        out
    }

    /// The first of `readinessChecks`.
    fn readiness(&mut self, ports: &[Port]) -> Option<ReadinessCheck> {
        let checks = self.take("readinessChecks").map(|v| self.list("readinessChecks", v)).unwrap_or_default();
        let mut checks = checks.into_iter();
        let first = checks.next()?;
        for i in 1..=checks.len() {
            self.skip(&format!("readinessChecks[{i}]"), "a service has one readiness check; the first was converted");
        }
        let field = "readinessChecks[0]";
        let mut rc = self.object(field, first)?;
        rc.remove("name");
        if let Some(protocol) = rc.remove("protocol").as_ref().and_then(Value::as_str).filter(|p| *p != "HTTP") {
            self.skip(field, format!("protocol {protocol}: readiness checks speak plain HTTP"));
            return None;
        }
        let marathon_name = match rc.remove("portName").filter(|v| !v.is_null()) {
            Some(v) => self.string(&format!("{field}.portName"), v)?,
            None => marathon_default::READY_PORT_NAME.to_string(),
        };
        let Some(port) = ports.iter().find(|p| p.marathon_name.as_deref() == Some(marathon_name.as_str())) else {
            self.skip(field, format!("its portName {marathon_name:?} names none of the app's ports"));
            return None;
        };
        let mut check = ReadinessCheck {
            port_name: port.port.name.clone(),
            path: "/".into(),
            http_status_codes_for_ready: vec![200],
            interval_seconds: marathon_default::READY_INTERVAL,
            timeout_seconds: marathon_default::READY_TIMEOUT,
        };
        if let Some(path) = rc.remove("path").and_then(|v| self.string(&format!("{field}.path"), v)) {
            check.path = path;
        }
        if let Some(v) = rc.remove("intervalSeconds").filter(|v| !v.is_null()) {
            check.interval_seconds =
                self.count(&format!("{field}.intervalSeconds"), &v).unwrap_or(check.interval_seconds);
        }
        if let Some(v) = rc.remove("timeoutSeconds").filter(|v| !v.is_null()) {
            check.timeout_seconds = self.count(&format!("{field}.timeoutSeconds"), &v).unwrap_or(check.timeout_seconds);
        }
        if let Some(v) = rc.remove("httpStatusCodesForReady").filter(|v| !v.is_null()) {
            let codes: Vec<u16> = self
                .list(&format!("{field}.httpStatusCodesForReady"), v)
                .iter()
                .filter_map(|c| whole(c)?.try_into().ok())
                .collect();
            if !codes.is_empty() {
                check.http_status_codes_for_ready = codes;
            }
        }
        if rc.remove("preserveLastResponse").as_ref().is_some_and(|v| !is_unset(v)) {
            self.skip(&format!("{field}.preserveLastResponse"), "Corral keeps no readiness responses");
        }
        self.leftovers(field, rc);
        Some(check)
    }

    /// `fetch`, else the legacy `uris`: as Mesos does, archives are unpacked unless
    /// `extract` is false.
    fn artifacts(&mut self) -> Vec<Artifact> {
        let fetch = self.take("fetch").map(|v| self.list("fetch", v)).unwrap_or_default();
        let uris = self.take("uris").map(|v| self.list("uris", v)).unwrap_or_default();
        let (name, entries) = if fetch.is_empty() {
            let entries = uris.into_iter().map(|u| Value::Object(Map::from_iter([("uri".to_string(), u)]))).collect();
            ("uris", entries)
        } else {
            ("fetch", fetch)
        };
        let mut out = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let field = format!("{name}[{i}]");
            let Some(mut entry) = self.object(&field, entry) else { continue };
            let Some(uri) = entry.remove("uri").and_then(|v| self.string(&format!("{field}.uri"), v)) else { continue };
            let uri = if uri.starts_with('/') { format!("file://{uri}") } else { uri };
            if !["http://", "https://", "file://"].iter().any(|s| uri.starts_with(s)) {
                self.skip(&field, format!("{uri:?}: the agent fetches only http://, https:// and file:// URIs"));
                continue;
            }
            let executable = entry.remove("executable").and_then(|v| v.as_bool()).unwrap_or(false);
            let wants_extract = entry.remove("extract").and_then(|v| v.as_bool()).unwrap_or(true);
            let path = uri.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
            let tar = [".tar", ".tar.gz", ".tgz"].iter().any(|e| path.ends_with(e));
            let other_archive = [".zip", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".gz", ".bz2", ".xz"]
                .iter()
                .any(|e| path.ends_with(e));
            if wants_extract && !tar && other_archive {
                self.skip(
                    &format!("{field}.extract"),
                    "the agent unpacks only .tar, .tar.gz and .tgz archives; this one is kept as it is",
                );
            }
            let dest = entry.remove("destPath").and_then(|v| self.string(&format!("{field}.destPath"), v));
            if entry.remove("cache").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip(&format!("{field}.cache"), "the agent fetches each task's artifacts anew (no cache)");
            }
            self.leftovers(&field, entry);
            out.push(Artifact { uri, sha256: None, dest, executable, extract: wants_extract && tar });
        }
        out
    }

    /// `constraints`: `[field, operator, value]` lists, or the legacy `field:OPERATOR:value`.
    fn constraints(&mut self) -> Vec<Constraint> {
        let mut out = Vec::new();
        let Some(list) = self.take("constraints") else { return out };
        for (i, c) in self.list("constraints", list).into_iter().enumerate() {
            let field = format!("constraints[{i}]");
            let mut parts: Vec<String> = match &c {
                Value::String(s) => s.splitn(3, ':').map(str::to_string).collect(),
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    items.iter().filter_map(Value::as_str).map(str::to_string).collect()
                }
                other => {
                    self.skip(&field, format!("expected [field, operator, value], found {other}"));
                    continue;
                }
            };
            if !(2..=3).contains(&parts.len()) {
                self.skip(&field, format!("expected [field, operator] or [field, operator, value], found {c}"));
                continue;
            }
            parts[1] = parts[1].to_ascii_uppercase();
            if !CONSTRAINT_OPERATORS.contains(&parts[1].as_str()) {
                self.skip(
                    &field,
                    format!("unknown operator {:?}; Corral knows {}", parts[1], CONSTRAINT_OPERATORS.join(", ")),
                );
                continue;
            }
            if let Some(attribute) = parts[0].strip_prefix('@') {
                parts[0] = attribute.to_string();
            }
            out.push(Constraint(parts));
        }
        out
    }

    fn upgrade_strategy(&mut self) -> UpgradeStrategy {
        let mut out = UpgradeStrategy::default();
        let Some(mut s) = self.take("upgradeStrategy").and_then(|v| self.object("upgradeStrategy", v)) else {
            return out;
        };
        if let Some(v) = s.remove("minimumHealthCapacity").filter(|v| !v.is_null()) {
            out.minimum_health_capacity =
                self.number("upgradeStrategy.minimumHealthCapacity", &v).unwrap_or(out.minimum_health_capacity);
        }
        if let Some(v) = s.remove("maximumOverCapacity").filter(|v| !v.is_null()) {
            out.maximum_over_capacity =
                self.number("upgradeStrategy.maximumOverCapacity", &v).unwrap_or(out.maximum_over_capacity);
        }
        self.leftovers("upgradeStrategy", s);
        out
    }

    fn backoff(&mut self) -> Backoff {
        let mut out = Backoff::default();
        for (key, slot) in [
            ("backoffSeconds", &mut out.backoff_seconds),
            ("backoffFactor", &mut out.backoff_factor),
            ("maxLaunchDelaySeconds", &mut out.max_launch_delay_seconds),
        ] {
            if let Some(v) = self.take(key) {
                *slot = self.number(key, &v).unwrap_or(*slot);
            }
        }
        out
    }

    fn kill_selection(&mut self) -> KillSelection {
        match self.take("killSelection") {
            None => KillSelection::default(),
            Some(Value::String(s)) if s == "YOUNGEST_FIRST" => KillSelection::YoungestFirst,
            Some(Value::String(s)) if s == "OLDEST_FIRST" => KillSelection::OldestFirst,
            Some(other) => {
                self.skip("killSelection", format!("{other}: expected YOUNGEST_FIRST or OLDEST_FIRST"));
                KillSelection::default()
            }
        }
    }

    fn unreachable_strategy(&mut self) -> UnreachableStrategy {
        let mut out = UnreachableStrategy::default();
        match self.take("unreachableStrategy") {
            None => {}
            // Marathon's "disabled": unreachable tasks count as lost at once.
            Some(Value::String(s)) if s == "disabled" => {}
            Some(Value::Object(mut s)) => {
                for (key, slot) in [
                    ("inactiveAfterSeconds", &mut out.inactive_after_seconds),
                    ("expungeAfterSeconds", &mut out.expunge_after_seconds),
                ] {
                    if let Some(v) = s.remove(key).filter(|v| !v.is_null()) {
                        *slot = self.count(&format!("unreachableStrategy.{key}"), &v).unwrap_or(*slot);
                    }
                }
                self.leftovers("unreachableStrategy", s);
            }
            Some(other) => self.skip("unreachableStrategy", format!("{other}: expected an object or \"disabled\"")),
        }
        out
    }

    /// Reports every field left that holds a value.
    fn rest(&mut self) {
        let rest = std::mem::take(&mut self.fields);
        for (k, v) in rest {
            if is_unset(&v) || MARATHON_STATE.contains(&k.as_str()) {
                continue;
            }
            let why = match k.as_str() {
                "acceptedResourceRoles" if v == serde_json::json!(["*"]) => continue,
                "acceptedResourceRoles" => "a service takes the resources of one role: set spec.role",
                "networks" if v == serde_json::json!([{"mode": "host"}]) => continue,
                "networks" | "ipAddress" => "tasks share the host's network",
                "residency" => "Corral has no resident tasks; node-local volumes are spec.template.volumeMounts",
                "secrets" => "Corral has no secrets",
                "dependencies" => "Corral starts services independently of each other",
                "executor" => "the node agent runs every task",
                "tty" => "tasks get no terminal",
                "storeUrls" => "Corral has no equivalent",
                _ => "Corral has no equivalent",
            };
            self.skip(&k, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(app: Value) -> Conversion<Service> {
        convert_marathon("app.json", &app.to_string()).expect("converts")
    }

    #[test]
    fn ids_become_a_name_and_a_namespace() {
        let c = convert(serde_json::json!({"id": "/prod/My_App", "cmd": "sleep 1"}));
        let svc = &c.objects[0];
        assert_eq!(svc.metadata.name, "my-app");
        assert_eq!(svc.metadata.namespace.as_deref(), Some("prod"));
        assert!(c.messages.iter().any(|m| m.starts_with("warning: app.json: field `id`: \"My_App\" became")), "{c:?}");
        assert!(c.messages.iter().any(|m| m.starts_with("note: app.json: field `id`: the group /prod")), "{c:?}");
    }

    #[test]
    fn group_members_resolve_relative_ids() {
        let c = convert(serde_json::json!({"id": "/shop", "apps": [{"id": "web"}],
            "groups": [{"id": "db", "apps": [{"id": "/other/pg"}, {"id": "../cache"}]}]}));
        let names: Vec<_> = c
            .objects
            .iter()
            .map(|s| format!("{}/{}", s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name))
            .collect();
        assert_eq!(names, ["shop/web", "other/pg", "shop/cache"]);
    }

    #[test]
    fn ports_keep_marathon_semantics() {
        let c = convert(serde_json::json!({"id": "/a", "requirePorts": false,
            "portDefinitions": [{"port": 0, "name": "http"}, {"port": 10001}],
            "healthChecks": [{"protocol": "MESOS_TCP", "portIndex": 1}]}));
        let t = &c.objects[0].spec.template;
        assert_eq!(
            t.ports.iter().map(|p| (p.name.as_str(), p.host_port)).collect::<Vec<_>>(),
            [("http", None), ("port1", None)]
        );
        assert_eq!(t.health_checks[0].tcp.as_ref().and_then(|t| t.port_name.as_deref()), Some("port1"));
        assert!(c.messages.iter().any(|m| m.contains("`portDefinitions[1].port`: not converted: service port 10001")));
        let c = convert(serde_json::json!({"id": "/a", "requirePorts": true, "portDefinitions": [{"port": 8080}]}));
        assert_eq!(c.objects[0].spec.template.ports[0].host_port, Some(8080));
    }

    #[test]
    fn legacy_constraints_and_defaults_convert() {
        let c = convert(serde_json::json!({"id": "/a", "constraints": ["hostname:UNIQUE", ["rack", "group_by", "3"]]}));
        let s = &c.objects[0].spec;
        assert_eq!(
            s.constraints,
            [
                Constraint(vec!["hostname".into(), "UNIQUE".into()]),
                Constraint(vec!["rack".into(), "GROUP_BY".into(), "3".into()])
            ]
        );
        assert_eq!((s.template.resources.cpus, s.template.resources.mem), (1.0, 128));
        assert!(c.messages.is_empty(), "{:?}", c.messages);
    }

    #[test]
    fn variables_corral_does_not_set_are_named() {
        assert_eq!(
            unset_variables("cd $MESOS_SANDBOX && run ${PORTS} $PORT0 $(MARATHON_APP_ID)"),
            [
                ("MESOS_SANDBOX", "use $CORRAL_SANDBOX"),
                ("PORTS", "use $PORT0, $PORT1, ... or $PORT_<NAME>"),
                ("MARATHON_APP_ID", "Corral does not set it"),
            ]
        );
    }

    #[test]
    fn labels_and_names_are_made_valid() {
        assert_eq!(dns_label("-My.App_1-"), "my-app-1");
        assert_eq!(label_value("web.example.com/x y"), "web.example.com-x-y");
        assert_eq!(label_value("{{x}}"), "x");
        assert_eq!(absolute_id("/a/b", "../c"), "/a/c");
    }
}
