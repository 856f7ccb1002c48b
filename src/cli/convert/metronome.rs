//! `corral convert metronome`: Metronome (DC/OS Jobs) job definitions (JSON) as `Job`
//! manifests.
//!
//! As `corral convert marathon` does for apps: what Corral can carry is converted field
//! by field; each field it cannot carry is named on stderr with why (`warning: FILE:
//! field `X`: not converted: ...`), and so is each value changed on the way (the
//! dotted id made a name of at most 40 characters, schedule ids made to fit, cron
//! expressions made to mean what they meant to Metronome); `note:` lines say what to
//! do besides applying. Fields left at their empty value, and the state Metronome adds
//! to the jobs it returns (`activeRuns`, `history`, a schedule's `nextRunAt`), are
//! skipped quietly.
//!
//! Metronome's defaults are written out where they differ from Corral's (1 CPU and
//! 128 MiB per task), or where they are the same but easy to mistake (a schedule's UTC
//! time zone, 900 s starting deadline, `ALLOW` and `enabled`). Metronome retries a
//! failed `ON_FAILURE` run without a limit, until `activeDeadlineSeconds`; Corral counts
//! attempts, so such a run gets the most it allows, 1000, and a note says so.

use std::collections::BTreeMap;
use std::fmt::Display;

use corral_api::kinds::job::{ConcurrencyPolicy, Job, JobSpec, RestartPolicy, RunTemplate, Schedule};
use corral_api::kinds::namespace::{TASK_SECURITY_LABEL, TASK_SECURITY_PRIVILEGED};
use corral_api::kinds::node::Resources;
use corral_api::kinds::service::Constraint;
use corral_api::kinds::task::{Artifact, TaskSpec};
use corral_controllers::jobs::schedule;
use serde_json::{Map, Value};

use super::{Conversion, Fields, dns_label, is_unset, json_type, parse_json, print, read};
use crate::cli::args::ConvertMetronomeArgs;

pub(super) fn run(args: &ConvertMetronomeArgs) -> anyhow::Result<u8> {
    let (source, text) = read(&args.file)?;
    let conversion = convert_metronome(&source, &text).map_err(anyhow::Error::msg)?;
    print(args.output, &conversion.objects, &conversion.messages)
}

/// The longest name of a job the server admits: its runs are named
/// `JOB-YYYYmmddHHMMSS` (three letters more for a manual run) and their tasks
/// `RUN-N`, within 63 characters.
const MAX_JOB_NAME: usize = 40;
/// The longest schedule id.
const MAX_SCHEDULE_ID: usize = 20;
/// The fewest characters a schedule id is cut to when a job's name leaves little
/// room (runs of a job with several schedules are named `JOB-ID-TIME`).
const MIN_SCHEDULE_ID: usize = 4;
/// The most attempts a Corral run may make.
const MAX_RETRY_LIMIT: u32 = 1000;
/// Where a job's `description` goes.
const DESCRIPTION_ANNOTATION: &str = "corral.dev/description";

/// Fields Metronome writes into the jobs it returns (`?embed=...`): state, not
/// definition.
const METRONOME_STATE: &[&str] = &["activeRuns", "history", "historySummary"];

/// Metronome's defaults for what its jobs leave out.
mod metronome_default {
    pub const CPUS: f64 = 1.0;
    pub const MEM: f64 = 128.0;
    pub const TIME_ZONE: &str = "UTC";
    pub const STARTING_DEADLINE: u64 = 900;
}

/// Converts the Metronome JSON `text`, read from `source`: a job (as `GET
/// /v1/jobs/ID?embed=schedules` answers, or as posted to `/v0/scheduled-jobs`), or a
/// list of jobs (as `GET /v1/jobs` answers).
///
/// # Errors
/// What is wrong, starting with `source`: text that is not JSON (with line and
/// column), JSON that is not a job, a job whose id cannot be made a name or that has
/// nothing to run.
pub(crate) fn convert_metronome(source: &str, text: &str) -> Result<Conversion<Job>, String> {
    let value = parse_json(source, text)?;
    let found = find_jobs(&value).map_err(|why| {
        format!(
            "{source}: not a Metronome job definition: {why}; expected a job ({{\"id\": \"nightly-backup\", \"run\": \
             {{\"cmd\": ...}}}}) or a list of jobs"
        )
    })?;
    if found.is_empty() {
        return Err(format!("{source}: no jobs found: the list is empty"));
    }
    let mut messages = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    for (at, fields) in found {
        let taken: Vec<String> = jobs.iter().map(|j| j.metadata.name.clone()).collect();
        let mut conv = Conv { source, at, messages: &mut messages };
        jobs.push(conv.job(fields.clone(), &taken)?);
    }
    Ok(Conversion { objects: jobs, messages })
}

/// A job found in the file: where it is, as a prefix of field paths (`""`, `[1].`),
/// and its fields.
type Found<'a> = (String, &'a Map<String, Value>);

/// The jobs in `v`. Fails with why `v` holds no jobs.
fn find_jobs(v: &Value) -> Result<Vec<Found<'_>>, String> {
    match v {
        Value::Array(items) => items.iter().enumerate().map(|(i, item)| job_at(item, &format!("[{i}]."))).collect(),
        v => Ok(vec![job_at(v, "")?]),
    }
}

/// The job `v`, found at `at`; fails with why it is none.
fn job_at<'a>(v: &'a Value, at: &str) -> Result<Found<'a>, String> {
    let Value::Object(o) = v else {
        return Err(match at.strip_suffix('.') {
            Some(place) => format!("`{place}` is {}, not an object", json_type(v)),
            None => format!("the JSON is {}, not an object", json_type(v)),
        });
    };
    let id = match o.get("id") {
        Some(Value::String(id)) => id,
        Some(_) => return Err(format!("`{at}id` is not a string")),
        None if o.contains_key("apiVersion") && o.contains_key("kind") => {
            return Err(format!("`{at}id` is missing (this is a Corral manifest already: apply it as it is)"));
        }
        None => return Err(format!("`{at}id` is missing")),
    };
    match o.get("run") {
        Some(Value::Object(_)) => Ok((at.to_string(), o)),
        Some(other) => Err(format!("`{at}run` is {}, not an object", json_type(other))),
        None if id.starts_with('/') => {
            Err(format!("`{at}run` is missing (a Marathon app? convert it with `corral convert marathon`)"))
        }
        None => Err(format!("`{at}run` is missing")),
    }
}

/// `s` cut to at most `n` characters, not ending in `-`.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect::<String>().trim_end_matches('-').to_string()
}

/// `name`, or `name-2`, `name-3`, ... (cut to `max` characters) if `taken` has it.
fn unique(name: String, max: usize, taken: &[String]) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            format!("{}{suffix}", cut(&name, max.saturating_sub(suffix.len())))
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(name)
}

/// Metronome's cron expression `expr` as Corral reads it to the same effect, with
/// why it was changed, if it was. Fails with why Corral cannot read it so.
///
/// Metronome reads five fields and an optional year; Corral's six-field form has
/// seconds first, so a `*` year is left out (any other has no equivalent). Metronome
/// runs on the days that match both the day of the month and the weekday when both
/// are given; Corral, as Vixie cron, on days that match either, unless the weekday
/// starts with `+`.
fn corral_cron(expr: &str) -> Result<(String, Vec<String>), String> {
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    let mut why = Vec::new();
    match fields.len() {
        5 => {}
        6 if matches!(fields[5].as_str(), "*" | "?") => {
            fields.pop();
            why.push("the year field `*` is left out, as Corral's six fields have seconds first".to_string());
        }
        6 => return Err(format!("the year field {:?}: Corral's expressions have no year", fields[5])),
        n => {
            return Err(format!(
                "{n} fields: Metronome's expressions have five (minute hour day month weekday) and an optional year"
            ));
        }
    }
    let any = |f: &str| matches!(f, "*" | "?");
    if !any(&fields[2]) && !any(&fields[4]) && !fields[4].starts_with('+') {
        fields[4] = format!("+{}", fields[4]);
        why.push(
            "Metronome runs on days that match both the day of the month and the weekday, which `+` asks of \
             Corral (otherwise either would do, as in Vixie cron)"
                .to_string(),
        );
    }
    let cron = fields.join(" ");
    schedule::parse_cron(&cron).map_err(|e| format!("Corral cannot read {cron:?}: {e}"))?;
    Ok((cron, why))
}

/// Takes `key` out of `map`, unless absent or null.
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

/// Corral's defaults for what a job leaves out.
fn corral_defaults() -> JobSpec {
    serde_json::from_value(serde_json::json!({"run": {"task": {}}})).expect("a job with only a task decodes")
}

/// What a namespace must be labelled to allow what only privileged namespaces allow.
fn privileged_label() -> String {
    format!("{TASK_SECURITY_LABEL}={TASK_SECURITY_PRIVILEGED}")
}

/// Converting one job: its fields are taken out of their objects as they are
/// converted; what is left is reported.
struct Conv<'a> {
    source: &'a str,
    /// Prefix of the job's field paths in the file.
    at: String,
    messages: &'a mut Vec<String>,
}

impl Fields for Conv<'_> {
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

impl Conv<'_> {
    /// An error about `field`, which stops the conversion.
    fn error(&self, field: &str, what: impl Display) -> String {
        format!("{}: field `{}`: {what}", self.source, self.path(field))
    }

    fn job(&mut self, mut fields: Map<String, Value>, taken: &[String]) -> Result<Job, String> {
        let id = fields.remove("id").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let mut name = self.name(&id, taken)?;
        let description = take(&mut fields, "description").and_then(|v| self.string("description", v));
        let labels = self.labels(take(&mut fields, "labels"));
        let run = fields.remove("run").and_then(|v| self.object("run", v)).unwrap_or_default();
        let run = self.run(run)?;
        let schedules = match take(&mut fields, "schedules") {
            Some(v) => self.schedules(v, &mut name),
            None => Vec::new(),
        };
        for (k, v) in fields {
            if is_unset(&v) || METRONOME_STATE.contains(&k.as_str()) {
                continue;
            }
            let why = match k.as_str() {
                "dependencies" => "Corral starts each job's runs independently of other jobs",
                _ => "Corral has no equivalent",
            };
            self.skip(&k, why);
        }
        let defaults = corral_defaults();
        let spec = JobSpec {
            run,
            schedules,
            successful_runs_history_limit: defaults.successful_runs_history_limit,
            failed_runs_history_limit: defaults.failed_runs_history_limit,
        };
        let mut job = Job::new(name, spec);
        job.metadata.labels = labels;
        if let Some(d) = description.filter(|d| !d.is_empty()) {
            job.metadata.annotations.insert(DESCRIPTION_ANNOTATION.into(), d);
        }
        Ok(job)
    }

    /// The job's name: its dotted id as an RFC 1123 label of at most
    /// [`MAX_JOB_NAME`] characters, not one of `taken`.
    fn name(&mut self, id: &str, taken: &[String]) -> Result<String, String> {
        let label = dns_label(id);
        if label.is_empty() {
            return Err(self.error(
                "id",
                format!(
                    "{id:?} cannot be made a name (an RFC 1123 label: lowercase letters, digits and '-'); rename \
                     the job"
                ),
            ));
        }
        let mut why = Vec::new();
        if label != id {
            why.push("names are RFC 1123 labels (lowercase letters, digits and '-')".to_string());
        }
        let mut name = cut(&label, MAX_JOB_NAME);
        if name != label {
            why.push(format!(
                "a job's name has at most {MAX_JOB_NAME} characters, as its runs and their tasks are named after it"
            ));
        }
        if taken.contains(&name) {
            name = unique(name, MAX_JOB_NAME, taken);
            why.push("another job of the file has the same name".to_string());
        }
        if !why.is_empty() {
            self.changed("id", format!("{id:?} became the name {name:?}: {}", why.join("; ")));
        }
        Ok(name)
    }

    /// `run`: the task template and what a run does on failure.
    fn run(&mut self, mut run: Map<String, Value>) -> Result<RunTemplate, String> {
        let mut task = TaskSpec::default();
        let (cmd, args) = (take(&mut run, "cmd"), take(&mut run, "args"));
        self.command(cmd, args, "run.", "a job", &mut task);
        self.image(&mut run, &mut task);
        if task.command.is_empty() && task.args.is_empty() && task.image.is_none() {
            return Err(self.error(
                "run",
                "the job has no cmd, args or image (docker.image, ucr.image.id), so nothing to run; Metronome \
                 refuses such a job too",
            ));
        }
        task.resources = self.resources(&mut run);
        task.env = self.env(&mut run);
        self.secrets(&mut run);
        task.artifacts = self.artifacts(&mut run);
        self.volumes(&mut run);
        let constraints = self.placement(&mut run);
        let (restart_policy, retry_limit, active_deadline_seconds) = self.restart(&mut run);
        // Metronome writes its default (3600) into every job it returns: only another
        // value says something the user chose.
        if let Some(v) = take(&mut run, "maxLaunchDelay").filter(|v| v.as_u64() != Some(3600)) {
            self.skip(
                "run.maxLaunchDelay",
                format!(
                    "{v} s: Corral has no launch deadline; a run waits for a place until its activeDeadlineSeconds \
                     (counted from the run's creation) pass, if it has them"
                ),
            );
        }
        if let Some(v) = take(&mut run, "user") {
            task.user = self.string("run.user", v);
            if task.user.as_deref().is_some_and(is_root) {
                self.note(
                    "run.user",
                    format!("uid 0 (root) is allowed only in a namespace labelled {}", privileged_label()),
                );
            }
        }
        if let Some(v) = take(&mut run, "taskKillGracePeriodSeconds") {
            task.kill_grace_period_seconds = self.count("run.taskKillGracePeriodSeconds", &v);
        }
        self.networks(&mut run);
        self.leftovers("run", run);
        self.variables(&task, "run.");
        if task.image.is_none() {
            let field = if task.command.is_empty() { "run.args" } else { "run.cmd" };
            self.note(
                field,
                format!(
                    "the job has no image: its tasks run natively on the host, which only a namespace labelled {} \
                     allows",
                    privileged_label()
                ),
            );
        }
        Ok(RunTemplate { task, constraints, role: None, restart_policy, retry_limit, active_deadline_seconds })
    }

    /// `docker` or `ucr`: the image.
    fn image(&mut self, run: &mut Map<String, Value>, task: &mut TaskSpec) {
        let docker = take(run, "docker").and_then(|v| self.object("run.docker", v));
        let ucr = take(run, "ucr").and_then(|v| self.object("run.ucr", v));
        if let Some(mut docker) = docker {
            if ucr.as_ref().is_some_and(|u| !u.is_empty()) {
                self.skip("run.ucr", "a job has docker or ucr, not both; docker was converted");
            }
            task.image = docker.remove("image").and_then(|v| self.string("run.docker.image", v));
            self.imported("run.docker.image", task.image.as_deref());
            if docker.remove("forcePullImage").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("run.docker.forcePullImage", "images are imported with `corral image import`, not pulled");
            }
            if docker.remove("privileged").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("run.docker.privileged", "Corral runs no privileged containers");
            }
            if docker.remove("parameters").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("run.docker.parameters", "tasks run in runc, not Docker: Docker options do not apply");
            }
            self.leftovers("run.docker", docker);
            return;
        }
        let Some(mut ucr) = ucr else { return };
        if let Some(mut image) = take(&mut ucr, "image").and_then(|v| self.object("run.ucr.image", v)) {
            task.image = image.remove("id").and_then(|v| self.string("run.ucr.image.id", v));
            self.imported("run.ucr.image.id", task.image.as_deref());
            match image.remove("kind").as_ref().and_then(Value::as_str) {
                None | Some("docker") => {}
                Some(kind) => self.changed(
                    "run.ucr.image.kind",
                    format!("{kind:?}: Corral runs OCI and Docker images; import one by this name"),
                ),
            }
            if image.remove("forcePull").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("run.ucr.image.forcePull", "images are imported with `corral image import`, not pulled");
            }
            if image.remove("pullConfig").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip("run.ucr.image.pullConfig", "images are imported with `corral image import`, not pulled");
            }
            self.leftovers("run.ucr.image", image);
        }
        if ucr.remove("privileged").as_ref().is_some_and(|v| !is_unset(v)) {
            self.skip("run.ucr.privileged", "Corral runs no privileged containers");
        }
        self.leftovers("run.ucr", ucr);
    }

    /// Reminds that `image`, from `field`, is imported on each node, not pulled.
    fn imported(&mut self, field: &str, image: Option<&str>) {
        let Some(image) = image else { return };
        self.note(
            field,
            format!(
                "Corral pulls from no registry: import {image:?} on each node with `corral image import` (names as \
                 `corral image ls` lists them)"
            ),
        );
    }

    /// `cpus`, `mem`, `disk`, with Metronome's defaults; `gpus` is reported.
    fn resources(&mut self, run: &mut Map<String, Value>) -> Resources {
        let cpus = take(run, "cpus").and_then(|v| self.number("run.cpus", &v)).unwrap_or(metronome_default::CPUS);
        let mem = take(run, "mem").and_then(|v| self.number("run.mem", &v)).unwrap_or(metronome_default::MEM);
        let disk = take(run, "disk").and_then(|v| self.number("run.disk", &v)).unwrap_or(0.0);
        if let Some(gpus) = take(run, "gpus").filter(|v| !is_unset(v)) {
            self.skip("run.gpus", format!("{gpus}: Corral offers no GPUs"));
        }
        Resources { cpus, mem: self.mib("run.mem", mem), disk: self.mib("run.disk", disk) }
    }

    /// `env`: plain values; secret references are reported.
    fn env(&mut self, run: &mut Map<String, Value>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(env) = take(run, "env").and_then(|v| self.object("run.env", v)) else { return out };
        for (k, v) in env {
            let field = format!("run.env.{k}");
            let value = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Object(o) if o.contains_key("secret") => {
                    let secret = o.get("secret").and_then(Value::as_str).unwrap_or_default();
                    self.skip(
                        &field,
                        format!(
                            "a reference to the secret {secret:?}, and Corral has no secrets; set the variable by hand"
                        ),
                    );
                    continue;
                }
                other => {
                    self.skip(&field, format!("expected a string, found {}", json_type(&other)));
                    continue;
                }
            };
            out.insert(k, value);
        }
        out
    }

    /// `secrets`: each is reported.
    fn secrets(&mut self, run: &mut Map<String, Value>) {
        let Some(secrets) = take(run, "secrets").and_then(|v| self.object("run.secrets", v)) else { return };
        for (k, v) in secrets {
            let source = v.get("source").and_then(Value::as_str).unwrap_or_default().to_string();
            self.skip(&format!("run.secrets.{k}"), format!("the secret store's {source:?}: Corral has no secrets"));
        }
    }

    /// `artifacts`: as Mesos does, archives are unpacked unless `extract` is false.
    fn artifacts(&mut self, run: &mut Map<String, Value>) -> Vec<Artifact> {
        let mut out = Vec::new();
        let Some(list) = take(run, "artifacts") else { return out };
        for (i, entry) in self.list("run.artifacts", list).into_iter().enumerate() {
            let field = format!("run.artifacts[{i}]");
            let Some(mut entry) = self.object(&field, entry) else { continue };
            let Some(uri) = take(&mut entry, "uri").and_then(|v| self.string(&format!("{field}.uri"), v)) else {
                self.skip(&field, "it has no uri");
                continue;
            };
            let uri = if uri.starts_with('/') { format!("file://{uri}") } else { uri };
            if !["http://", "https://", "file://"].iter().any(|s| uri.starts_with(s)) {
                self.skip(&field, format!("{uri:?}: the agent fetches only http://, https:// and file:// URIs"));
                continue;
            }
            let executable = match take(&mut entry, "executable") {
                Some(v) => self.boolean(&format!("{field}.executable"), &v).unwrap_or(false),
                None => false,
            };
            let wants_extract = match take(&mut entry, "extract") {
                Some(v) => self.boolean(&format!("{field}.extract"), &v).unwrap_or(true),
                None => true,
            };
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
            if entry.remove("cache").as_ref().is_some_and(|v| !is_unset(v)) {
                self.skip(&format!("{field}.cache"), "the agent fetches each task's artifacts anew (no cache)");
            }
            if uri.starts_with("file://") {
                self.note(
                    &format!("{field}.uri"),
                    format!(
                        "file:// artifacts read the node's files: only a namespace labelled {} allows them",
                        privileged_label()
                    ),
                );
            }
            self.leftovers(&field, entry);
            out.push(Artifact { uri, sha256: None, dest: None, executable, extract: wants_extract && tar });
        }
        out
    }

    /// `volumes`: host paths and secrets, neither of which Corral mounts.
    fn volumes(&mut self, run: &mut Map<String, Value>) {
        let Some(list) = take(run, "volumes") else { return };
        for (i, v) in self.list("run.volumes", list).into_iter().enumerate() {
            let field = format!("run.volumes[{i}]");
            let Some(v) = self.object(&field, v) else { continue };
            let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let (container, host, secret) = (text("containerPath"), text("hostPath"), text("secret"));
            let why = if !secret.is_empty() {
                format!("the secret {secret:?} at {container}: Corral has no secrets")
            } else {
                format!(
                    "the host's {host} at {container}: Corral mounts no host paths, only node-local named volumes \
                     (spec.run.task.volumeMounts); add one by hand"
                )
            };
            self.skip(&field, why);
        }
    }

    /// `placement.constraints`: Metronome's `EQ` is Corral's `IS`.
    fn placement(&mut self, run: &mut Map<String, Value>) -> Vec<Constraint> {
        let mut out = Vec::new();
        let Some(mut placement) = take(run, "placement").and_then(|v| self.object("run.placement", v)) else {
            return out;
        };
        let list = take(&mut placement, "constraints").map(|v| self.list("run.placement.constraints", v));
        for (i, c) in list.unwrap_or_default().into_iter().enumerate() {
            let field = format!("run.placement.constraints[{i}]");
            let Some(mut c) = self.object(&field, c) else { continue };
            let attribute = take(&mut c, "attribute").and_then(|v| self.string(&format!("{field}.attribute"), v));
            let operator = take(&mut c, "operator").and_then(|v| self.string(&format!("{field}.operator"), v));
            let value = take(&mut c, "value").and_then(|v| self.string(&format!("{field}.value"), v));
            let (Some(attribute), Some(operator)) = (attribute.filter(|a| !a.is_empty()), operator) else {
                self.skip(&field, "a constraint needs an attribute and an operator");
                continue;
            };
            let operator = match operator.to_ascii_uppercase().as_str() {
                "EQ" | "IS" => "IS",
                "LIKE" => "LIKE",
                "UNLIKE" => "UNLIKE",
                other => {
                    self.skip(&field, format!("unknown operator {other:?}; Metronome knows EQ, IS, LIKE and UNLIKE"));
                    continue;
                }
            };
            let Some(value) = value else {
                self.skip(&field, format!("{operator} needs a value"));
                continue;
            };
            let attribute = attribute.strip_prefix('@').unwrap_or(&attribute).to_string();
            self.leftovers(&field, c);
            out.push(Constraint(vec![attribute, operator.to_string(), value]));
        }
        self.leftovers("run.placement", placement);
        out
    }

    /// `restart`: the policy, Corral's retry limit for it, and the deadline.
    fn restart(&mut self, run: &mut Map<String, Value>) -> (RestartPolicy, u32, Option<u64>) {
        let defaults = corral_defaults().run;
        let mut policy = RestartPolicy::Never;
        let mut deadline = None;
        let Some(mut restart) = take(run, "restart").and_then(|v| self.object("run.restart", v)) else {
            return (policy, defaults.retry_limit, deadline);
        };
        match take(&mut restart, "policy") {
            None => {}
            Some(Value::String(p)) if p == "NEVER" => {}
            Some(Value::String(p)) if p == "ON_FAILURE" => policy = RestartPolicy::OnFailure,
            Some(other) => {
                self.skip("run.restart.policy", format!("{other}: expected NEVER or ON_FAILURE; NEVER applies"))
            }
        }
        if let Some(v) = take(&mut restart, "activeDeadlineSeconds").filter(|v| !is_unset(v)) {
            deadline = self.count("run.restart.activeDeadlineSeconds", &v);
        }
        self.leftovers("run.restart", restart);
        if policy != RestartPolicy::OnFailure {
            return (policy, defaults.retry_limit, deadline);
        }
        let until = match deadline {
            Some(s) => format!("until its activeDeadlineSeconds ({s}) pass"),
            None => "for as long as it takes (it has no activeDeadlineSeconds)".to_string(),
        };
        self.note(
            "run.restart.policy",
            format!(
                "Metronome retries a failed run without a limit, {until}; Corral counts attempts, so retryLimit is \
                 {MAX_RETRY_LIMIT}, the most it allows"
            ),
        );
        (policy, MAX_RETRY_LIMIT, deadline)
    }

    /// `networks`: the host's network is what tasks have; others are reported.
    fn networks(&mut self, run: &mut Map<String, Value>) {
        let Some(list) = take(run, "networks") else { return };
        let others: Vec<String> = self
            .list("run.networks", list)
            .iter()
            .filter(|n| n.get("mode").and_then(Value::as_str) != Some("host"))
            .map(|n| {
                let mode = n.get("mode").and_then(Value::as_str).unwrap_or("?");
                match n.get("name").and_then(Value::as_str) {
                    Some(name) => format!("{mode} ({name})"),
                    None => mode.to_string(),
                }
            })
            .collect();
        if !others.is_empty() {
            self.skip("run.networks", format!("{}: tasks share the host's network (and its ports)", others.join(", ")));
        }
    }

    /// `schedules`, each one Corral can read; their ids made to fit.
    fn schedules(&mut self, v: Value, name: &mut String) -> Vec<Schedule> {
        let mut out: Vec<(String, Schedule)> = Vec::new();
        for (i, s) in self.list("schedules", v).into_iter().enumerate() {
            let field = format!("schedules[{i}]");
            let Some(s) = self.object(&field, s) else { continue };
            if let Some(s) = self.schedule(&field, s) {
                out.push((field, s));
            }
        }
        self.schedule_ids(&mut out, name);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// One schedule, with Metronome's defaults; `None` after reporting when Corral
    /// cannot read its expression or time zone.
    fn schedule(&mut self, field: &str, mut s: Map<String, Value>) -> Option<Schedule> {
        s.remove("nextRunAt");
        let id = take(&mut s, "id").and_then(|v| self.string(&format!("{field}.id"), v)).unwrap_or_default();
        let Some(expr) = take(&mut s, "cron").and_then(|v| self.string(&format!("{field}.cron"), v)) else {
            self.skip(field, "it has no cron expression");
            return None;
        };
        // Metronome reads `timezone`; its published schema says `timeZone`.
        let zone_key = if s.get("timezone").is_some_and(|v| !v.is_null()) { "timezone" } else { "timeZone" };
        let time_zone = take(&mut s, zone_key)
            .and_then(|v| self.string(&format!("{field}.{zone_key}"), v))
            .unwrap_or_else(|| metronome_default::TIME_ZONE.to_string());
        s.remove("timeZone");
        let starting_deadline_seconds = match take(&mut s, "startingDeadlineSeconds") {
            Some(v) => self.count(&format!("{field}.startingDeadlineSeconds"), &v),
            None => None,
        }
        .unwrap_or(metronome_default::STARTING_DEADLINE);
        let concurrency_policy = match take(&mut s, "concurrencyPolicy") {
            None => ConcurrencyPolicy::Allow,
            Some(Value::String(p)) if p == "ALLOW" => ConcurrencyPolicy::Allow,
            Some(Value::String(p)) if p == "FORBID" => ConcurrencyPolicy::Forbid,
            Some(other) => {
                self.skip(
                    &format!("{field}.concurrencyPolicy"),
                    format!("{other}: expected ALLOW (or FORBID); ALLOW applies"),
                );
                ConcurrencyPolicy::Allow
            }
        };
        let enabled = match take(&mut s, "enabled") {
            Some(v) => self.boolean(&format!("{field}.enabled"), &v).unwrap_or(true),
            None => true,
        };
        self.leftovers(field, s);
        let cron = match corral_cron(&expr) {
            Ok((cron, why)) => {
                if !why.is_empty() {
                    self.changed(&format!("{field}.cron"), format!("{expr:?} became {cron:?}: {}", why.join("; ")));
                }
                cron
            }
            Err(why) => {
                self.skip(field, format!("cron {expr:?}: {why}; add a schedule Corral can read by hand"));
                return None;
            }
        };
        let out = Schedule { id, cron, time_zone, starting_deadline_seconds, concurrency_policy, enabled };
        if let Err(why) = schedule::compile(&out) {
            self.skip(field, format!("{why}; add the schedule by hand"));
            return None;
        }
        Some(out)
    }

    /// Makes the schedules' ids what the server admits: RFC 1123 labels of at most
    /// [`MAX_SCHEDULE_ID`] characters, different from each other, and, with several
    /// schedules, short enough for `JOB-ID-TIME` run names (the job's `name` is cut
    /// when it leaves too little room).
    fn schedule_ids(&mut self, schedules: &mut [(String, Schedule)], name: &mut String) {
        let several = schedules.len() > 1;
        // "JOB-ID" fits where a job's name alone does.
        let room = MAX_JOB_NAME - 1;
        if several && name.len() + MIN_SCHEDULE_ID > room {
            let before = name.clone();
            *name = cut(name, room - MIN_SCHEDULE_ID);
            self.changed(
                "id",
                format!(
                    "the name {before:?} became {name:?}: with several schedules, runs are named JOB-SCHEDULE-TIME, \
                     and the job's name and each schedule's id together have at most {room} characters"
                ),
            );
        }
        let budget = if several { MAX_SCHEDULE_ID.min(room - name.len()) } else { MAX_SCHEDULE_ID };
        let mut used: Vec<String> = Vec::new();
        for (field, s) in schedules.iter_mut() {
            let given = std::mem::take(&mut s.id);
            let label = dns_label(&given);
            let label = if label.is_empty() { "default".to_string() } else { label };
            let mut id = cut(&label, budget);
            let mut why = Vec::new();
            if label != given && !given.is_empty() {
                why.push("schedule ids are RFC 1123 labels (lowercase letters, digits and '-')".to_string());
            }
            if id != label {
                why.push(if budget < MAX_SCHEDULE_ID {
                    format!(
                        "with several schedules, runs are named JOB-SCHEDULE-TIME, and the job's name and each \
                         schedule's id together have at most {room} characters"
                    )
                } else {
                    format!("schedule ids have at most {MAX_SCHEDULE_ID} characters")
                });
            }
            if used.contains(&id) {
                id = unique(id, budget, &used);
                why.push("another schedule of the job has the same id".to_string());
            }
            if !why.is_empty() {
                let shown_given = if given.is_empty() { "no id".to_string() } else { format!("{given:?}") };
                self.changed(&format!("{field}.id"), format!("{shown_given} became {id:?}: {}", why.join("; ")));
            }
            used.push(id.clone());
            s.id = id;
        }
    }
}

/// Whether `user` is root, by name or uid, as the server's admission judges it.
fn is_root(user: &str) -> bool {
    let u = user.split(':').next().unwrap_or_default().trim();
    u == "root" || u.parse::<u32>() == Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(job: Value) -> Conversion<Job> {
        convert_metronome("job.json", &job.to_string()).expect("converts")
    }

    /// The server's schema check of `job`: the field errors, if any.
    fn schema_errors(job: &Job) -> Vec<String> {
        let registry = corral_api::Registry::builtin();
        let info = registry.resolve("jobs").expect("jobs are built in");
        let mut value = serde_json::to_value(job).expect("a job serializes");
        value["metadata"]["namespace"] = json!("default");
        match registry.validate(&info, &value) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn dotted_ids_become_names_of_at_most_forty_characters() {
        let c = convert(json!({"id": "prod.backup", "run": {"cmd": "true"}}));
        assert_eq!(c.objects[0].metadata.name, "prod-backup");
        assert!(
            c.messages.iter().any(|m| m.starts_with("warning: job.json: field `id`: \"prod.backup\" became the name")),
            "{c:?}"
        );
        let long = "analytics.warehouse.nightly-aggregation-of-sales";
        let c = convert(json!({"id": long, "run": {"cmd": "true"}}));
        let name = &c.objects[0].metadata.name;
        assert_eq!(name, "analytics-warehouse-nightly-aggregation");
        assert!(name.len() <= MAX_JOB_NAME);
        assert!(c.messages.iter().any(|m| m.contains("at most 40 characters")), "{c:?}");
        let c = convert(json!({"id": "backup", "run": {"cmd": "true"}}));
        assert!(!c.messages.iter().any(|m| m.contains("field `id`")), "an id that is a name stays: {c:?}");
    }

    #[test]
    fn metronome_defaults_are_written_out() {
        let c = convert(json!({"id": "nightly", "run": {"cmd": "true"},
            "schedules": [{"id": "default", "cron": "0 2 * * *"}]}));
        let spec = &c.objects[0].spec;
        assert_eq!((spec.run.task.resources.cpus, spec.run.task.resources.mem), (1.0, 128));
        assert_eq!(spec.run.restart_policy, RestartPolicy::Never);
        assert_eq!((spec.successful_runs_history_limit, spec.failed_runs_history_limit), (3, 1));
        let s = &spec.schedules[0];
        assert_eq!((s.time_zone.as_str(), s.starting_deadline_seconds), ("UTC", 900));
        assert_eq!((s.concurrency_policy, s.enabled), (ConcurrencyPolicy::Allow, true));
        assert_eq!(schema_errors(&c.objects[0]), Vec::<String>::new());
    }

    #[test]
    fn on_failure_gets_the_most_attempts_corral_allows_with_a_note() {
        let c = convert(json!({"id": "etl", "run": {"docker": {"image": "busybox"}, "args": ["run"],
            "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 3600}}}));
        let run = &c.objects[0].spec.run;
        assert_eq!(run.restart_policy, RestartPolicy::OnFailure);
        assert_eq!((run.retry_limit, run.active_deadline_seconds), (1000, Some(3600)));
        assert_eq!(
            (run.task.image.as_deref(), run.task.args.as_slice()),
            (Some("busybox"), ["run".to_string()].as_slice())
        );
        assert!(
            c.messages.iter().any(|m| m.starts_with("note: job.json: field `run.restart.policy`: Metronome retries")
                && m.contains("until its activeDeadlineSeconds (3600) pass")),
            "{c:?}"
        );
        assert_eq!(schema_errors(&c.objects[0]), Vec::<String>::new());
    }

    #[test]
    fn cron_expressions_keep_metronome_meaning() {
        let same = |e: &str| corral_cron(e).map(|(c, why)| (c, why.len()));
        assert_eq!(same("30 2 * * *"), Ok(("30 2 * * *".into(), 0)));
        assert_eq!(same("0 3 * * 1-5 *"), Ok(("0 3 * * 1-5".into(), 1)), "a `*` year is left out");
        assert_eq!(same("0 3 1-7 * MON"), Ok(("0 3 1-7 * +MON".into(), 1)), "day and weekday must both match");
        assert_eq!(same("0 3 ? * 1"), Ok(("0 3 ? * 1".into(), 0)));
        assert!(corral_cron("0 3 1 1 * 2030").is_err_and(|e| e.contains("year")));
        assert!(corral_cron("@daily").is_err_and(|e| e.starts_with("1 fields")));
        assert!(corral_cron("61 * * * *").is_err_and(|e| e.starts_with("Corral cannot read")));
        // What the schedule says is what the jobs controller reads.
        for e in ["0 3 1-7 * +MON", "30 2 * * *"] {
            assert!(schedule::parse_cron(e).is_ok(), "{e}");
        }
    }

    #[test]
    fn schedules_corral_cannot_read_are_left_out_and_named() {
        let c = convert(json!({"id": "j", "run": {"cmd": "true"}, "schedules": [
            {"id": "good", "cron": "0 0 * * *", "timezone": "Europe/Berlin", "nextRunAt": "2024-01-01T00:00:00.000+0000"},
            {"id": "mars", "cron": "0 0 * * *", "timezone": "Mars/Olympus"},
            {"id": "year", "cron": "0 0 1 1 * 2030"}]}));
        let spec = &c.objects[0].spec;
        assert_eq!(spec.schedules.len(), 1);
        assert_eq!(spec.schedules[0].time_zone, "Europe/Berlin");
        let warnings: Vec<_> = c.messages.iter().filter(|m| m.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].contains("field `schedules[1]`: not converted: timeZone \"Mars/Olympus\""),
            "{warnings:#?}"
        );
        assert!(warnings[1].contains("field `schedules[2]`: not converted: cron \"0 0 1 1 * 2030\""), "{warnings:#?}");
    }

    #[test]
    fn schedule_ids_fit_the_names_of_runs() {
        let c = convert(json!({"id": "a-rather-long-job-name-of-thirty-four", "run": {"cmd": "true"}, "schedules": [
            {"id": "weekdays-in-the-morning", "cron": "0 6 * * 1-5"},
            {"id": "weekdays-in-the-evening", "cron": "0 18 * * 1-5"}]}));
        let job = &c.objects[0];
        let ids: Vec<_> = job.spec.schedules.iter().map(|s| s.id.as_str()).collect();
        for id in &ids {
            assert!(job.metadata.name.len() + id.len() < MAX_JOB_NAME, "{} {id}", job.metadata.name);
        }
        assert_ne!(ids[0], ids[1]);
        assert_eq!(schema_errors(job), Vec::<String>::new());
        let c = convert(json!({"id": "j", "run": {"cmd": "true"}, "schedules": [
            {"id": "nightly-backup-of-the-warehouse", "cron": "0 1 * * *"}]}));
        assert_eq!(c.objects[0].spec.schedules[0].id, "nightly-backup-of-th");
    }

    #[test]
    fn what_corral_cannot_carry_is_named() {
        let c = convert(json!({"id": "legacy", "run": {
            "cmd": "cd $MESOS_SANDBOX && ./etl", "cpus": 0.5, "mem": 64.5, "gpus": 1,
            "docker": {"image": "etl:1", "privileged": true, "parameters": [{"key": "ulimit", "value": "nofile=1024"}]},
            "env": {"DB": {"secret": "db"}, "MODE": "full"}, "secrets": {"db": {"source": "prod/db"}},
            "volumes": [{"containerPath": "/data", "hostPath": "/srv/data", "mode": "RW"}],
            "maxLaunchDelay": 600, "networks": [{"mode": "container", "name": "dcos"}],
            "placement": {"constraints": [{"attribute": "rack", "operator": "EQ", "value": "r1"},
                                          {"attribute": "zone", "operator": "GROUP_BY"}]}},
            "dependencies": [{"id": "other"}], "history": {"successCount": 3}}));
        let job = &c.objects[0];
        assert_eq!(job.spec.run.task.resources.mem, 65);
        assert_eq!(job.spec.run.task.env.len(), 1);
        assert_eq!(job.spec.run.constraints, [Constraint(vec!["rack".into(), "IS".into(), "r1".into()])]);
        let fields: Vec<&str> =
            c.messages.iter().filter(|m| m.starts_with("warning:")).filter_map(|m| m.split('`').nth(1)).collect();
        assert_eq!(
            fields,
            [
                "run.docker.privileged",
                "run.docker.parameters",
                "run.gpus",
                "run.mem",
                "run.env.DB",
                "run.secrets.db",
                "run.volumes[0]",
                "run.placement.constraints[1]",
                "run.maxLaunchDelay",
                "run.networks",
                "run.cmd",
                "dependencies"
            ],
            "{:#?}",
            c.messages
        );
        assert_eq!(schema_errors(job), Vec::<String>::new());
    }

    #[test]
    fn lists_convert_each_job_and_names_stay_apart() {
        let c = convert(json!([{"id": "a.b", "run": {"cmd": "true"}}, {"id": "a-b", "run": {"cmd": "true"}}]));
        let names: Vec<_> = c.objects.iter().map(|j| j.metadata.name.as_str()).collect();
        assert_eq!(names, ["a-b", "a-b-2"]);
        assert!(c.messages.iter().any(|m| m.contains("field `[1].id`") && m.contains("another job")), "{c:?}");
    }

    #[test]
    fn files_that_are_not_jobs_are_errors() {
        let err = convert_metronome("j.json", "{\"id\": \"x\",\n \"run\": }").unwrap_err();
        assert!(err.starts_with("j.json:2:9: not valid JSON: "), "{err}");
        let err = convert_metronome("j.json", "[{\"id\": \"x\"}]").unwrap_err();
        assert!(err.starts_with("j.json: not a Metronome job definition: `[0].run` is missing;"), "{err}");
        let err = convert_metronome("j.json", "{\"id\": \"/web\", \"cmd\": \"x\"}").unwrap_err();
        assert!(err.contains("corral convert marathon"), "{err}");
        let err = convert_metronome("j.json", "[]").unwrap_err();
        assert_eq!(err, "j.json: no jobs found: the list is empty");
        let err = convert_metronome("j.json", "{\"id\": \"x\", \"run\": {\"cpus\": 1}}").unwrap_err();
        assert!(err.starts_with("j.json: field `run`: the job has no cmd, args or image"), "{err}");
    }

    #[test]
    fn every_example_converts_to_a_job_the_schema_accepts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/metronome");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/metronome") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            let c = convert_metronome(&path.display().to_string(), &text).expect("converts");
            for job in &c.objects {
                assert_eq!(schema_errors(job), Vec::<String>::new(), "{}", path.display());
            }
            seen += 1;
        }
        assert!(seen >= 3, "{seen} examples");
    }
}
