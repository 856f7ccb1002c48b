// A job's page: its schedules, last and next run, and its runs live — each attempt's
// task, node, start, end and exit code or reason — with "Run now" (a JobRun made as
// `corral job run` makes it) and "Kill" on an active run (`spec.kill`, as `corral job
// kill`). The jobs controller does the rest and reports it in the runs' status, which
// the page shows as it changes (a run it refuses, under FORBID say, ends Failed with
// its reason), and in the job's Events (runs refused, replaced, started late).

import "./style.css";

import { useState } from "preact/hooks";

import { ApiError, type Cause, CORE_GROUP, collectionPath, type Kind, objectPath, request, sendJson } from "../api";
import { useCan, useKinds, useLive, useNow } from "../hooks";
import { ObjectPage, Refusal, refusalOf } from "../pages";
import { Head, LinkStatus } from "../widgets";
import { ObjectEvents } from "./tasks";
import { together } from "../watch";
import { listHref, objectHref } from "../router";
import { age, humanDuration } from "../table";

/** Label on every run of a job (and every task of a run): the job's name. */
export const JOB_LABEL = "corral.dev/job";

/** Names tried for a new run before a clash is an error (as the CLI). */
const NAME_ATTEMPTS = 5;

/** Whether a run's phase is an end. */
export function runEnded(phase: unknown): boolean {
  return phase === "Succeeded" || phase === "Failed" || phase === "Killed";
}

/**
 * A manual run's name as `corral job run` makes it: the job's, the time to the second
 * (UTC) and three letters.
 */
export function manualRunName(job: string, now: Date, random: () => number = Math.random): string {
  const p = (n: number) => String(n).padStart(2, "0");
  const stamp = `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}${p(now.getUTCHours())}${p(
    now.getUTCMinutes(),
  )}${p(now.getUTCSeconds())}`;
  const letters = Array.from({ length: 3 }, () => String.fromCharCode(97 + Math.floor(random() * 26))).join("");
  return `${job}-${stamp}${letters}`;
}

/** Seconds between two RFC 3339 times (`end` absent: until `nowMs`), as an age reads. */
function duration(start: unknown, end: unknown, nowMs: number): string {
  if (typeof start !== "string") return "-";
  const s = Date.parse(start);
  if (Number.isNaN(s)) return "-";
  if (typeof end === "string" && !Number.isNaN(Date.parse(end))) return humanDuration((Date.parse(end) - s) / 1000);
  return `${humanDuration((nowMs - s) / 1000)} so far`;
}

/** An RFC 3339 time as the page shows it: the time itself, and how long ago or until. */
function When(props: { at: unknown; now: number }) {
  if (typeof props.at !== "string" || !props.at) return <span class="muted">-</span>;
  const t = Date.parse(props.at);
  const rel = Number.isNaN(t) ? "" : t > props.now ? `in ${humanDuration((t - props.now) / 1000)}` : `${age(props.at, props.now)} ago`;
  return (
    <time dateTime={props.at} title={props.at}>
      {rel || props.at}
    </time>
  );
}

function Phase(props: { phase: unknown }) {
  const p = String(props.phase ?? "Pending");
  return (
    <span class={`phase phase-${p.toLowerCase()}`} data-phase={p}>
      {p}
    </span>
  );
}

/** Starts a run of `job` as `corral job run` does: its label, and owned by the job. */
async function startRun(runs: Kind, job: any): Promise<string> {
  const name = String(job.metadata.name);
  const namespace = String(job.metadata.namespace);
  for (let i = 0; i < NAME_ATTEMPTS; i++) {
    const run = {
      apiVersion: `${runs.group}/${runs.version}`,
      kind: runs.kind,
      metadata: {
        name: manualRunName(name, new Date()),
        namespace,
        labels: { [JOB_LABEL]: name },
        ownerReferences: job.metadata.uid
          ? [
              {
                apiVersion: String(job.apiVersion ?? `${CORE_GROUP}/v1`),
                kind: "Job",
                name,
                uid: job.metadata.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ]
          : [],
      },
      spec: { job: name },
    };
    try {
      const created = await sendJson("POST", collectionPath(runs, namespace), run);
      return String(created?.metadata?.name ?? run.metadata.name);
    } catch (e) {
      if (e instanceof ApiError && e.code === 409 && e.reason === "AlreadyExists") continue;
      throw e;
    }
  }
  throw new Error(`could not find a free name for a run of job/${name} in ${NAME_ATTEMPTS} tries; try again`);
}

function Attempts(props: { attempts: any[]; namespace: string; now: number }) {
  if (props.attempts.length === 0) return <span class="muted">none yet</span>;
  return (
    <ol class="attempts">
      {props.attempts.map((a) => {
        const ended = a?.exitCode !== undefined && a?.exitCode !== null ? `exit ${a.exitCode}` : a?.reason ?? "";
        return (
          <li data-task={a?.task}>
            <a href={objectHref("tasks", props.namespace, String(a?.task ?? ""))}>{a?.task}</a>
            {a?.node && (
              <>
                {" on "}
                <a href={objectHref("nodes", undefined, String(a.node))}>{a.node}</a>
              </>
            )}
            {a?.startTime && (
              <>
                {", "}
                <When at={a.startTime} now={props.now} />
                {" for "}
                {duration(a.startTime, a.finishTime, props.now)}
              </>
            )}
            {ended && (
              <>
                {", "}
                <span class="attempt-end">{ended}</span>
              </>
            )}
            {a?.exitCode !== undefined && a?.exitCode !== null && a?.reason ? (
              <span class="muted"> ({a.reason})</span>
            ) : null}
          </li>
        );
      })}
    </ol>
  );
}

function JobOf(props: { jobs: Kind; runs: Kind; namespace: string; name: string }) {
  const { jobs, runs, namespace, name } = props;
  const jobSnap = useLive(jobs, { namespace, fieldSelector: `metadata.name=${name}` });
  const runSnap = useLive(runs, { namespace, labelSelector: `${JOB_LABEL}=${name}` });
  const mayRun = useCan("create", runs, namespace);
  const mayKill = useCan("patch", runs, namespace);
  const now = useNow(1000);
  const [error, setError] = useState<{ message: string; causes: Cause[] } | null>(null);
  const [busy, setBusy] = useState(false);
  const [started, setStarted] = useState<string | null>(null);
  const job = [...jobSnap.items.values()].find((o) => o?.metadata?.name === name);
  const spec = job?.spec ?? {};
  const status = job?.status ?? {};
  // A run made without the label is labelled by the controller; until then its spec
  // says whose it is (as `corral job history`).
  const all = [...runSnap.items.values()].filter((r) => r?.spec?.job === name);
  all.sort((a, b) =>
    `${b?.metadata?.creationTimestamp ?? ""}/${b?.metadata?.name}`.localeCompare(
      `${a?.metadata?.creationTimestamp ?? ""}/${a?.metadata?.name}`,
    ),
  );
  const mine = started ? all.find((r) => r?.metadata?.name === started) : undefined;

  const runNow = async () => {
    if (!job) return;
    setBusy(true);
    setError(null);
    try {
      setStarted(await startRun(runs, job));
    } catch (e) {
      setError(refusalOf(e));
    } finally {
      setBusy(false);
    }
  };
  const kill = async (run: string) => {
    if (!window.confirm(`Kill run ${run}?`)) return;
    setError(null);
    try {
      await request(objectPath(runs, namespace, run), {
        method: "PATCH",
        headers: { "Content-Type": "application/merge-patch+json" },
        body: JSON.stringify({ spec: { kill: true } }),
      });
    } catch (e) {
      setError(refusalOf(e));
    }
  };
  const schedStatus = (id: string) => (status.schedules ?? []).find((s: any) => s?.id === id) ?? {};
  const linked = together([jobSnap, runSnap]);

  return (
    <section class="job-page" data-reviewed={String(mayRun !== undefined && mayKill !== undefined)}>
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={listHref("jobs")}>Job</a>
        {" / "}
        <a href={listHref("jobs", namespace)}>{namespace}</a>
      </nav>
      <div class="title">
        <h1>{name}</h1>
        <LinkStatus link={linked.link} error={linked.error} />
        {job && mayRun && (
          <button id="run-now" type="button" onClick={runNow} disabled={busy}>
            Run now
          </button>
        )}
      </div>
      <Refusal error={error} />
      {started && (
        <p class="notice" id="started" role="status" data-run={started} data-phase={mine?.status?.phase ?? ""}>
          Started run <strong>{started}</strong>
          {mine?.status?.phase ? (
            <>
              {": "}
              <Phase phase={mine.status.phase} />
            </>
          ) : (
            "; waiting for the jobs controller"
          )}
          {mine?.status?.message ? ` — ${mine.status.message}` : ""}
          {!mine?.status?.message && mine?.status?.waiting?.message ? ` — ${mine.status.waiting.message}` : ""}
        </p>
      )}
      {!job && jobSnap.loaded && (
        <p class="muted" id="gone">
          There is no job {name} in {namespace} (now).
        </p>
      )}
      {job && (
        <dl class="fields" id="job-summary">
          <div>
            <dt>LAST RUN</dt>
            <dd id="last-run">{status.lastRun ?? "<none>"}</dd>
          </div>
          <div>
            <dt>RESULT</dt>
            <dd id="last-result">{status.lastResult ? <Phase phase={status.lastResult} /> : "<none>"}</dd>
          </div>
          <div>
            <dt>NEXT RUN</dt>
            <dd id="next-run">
              {status.nextRunTime ? <When at={status.nextRunTime} now={now} /> : "only by hand"}
            </dd>
          </div>
          <div>
            <dt>ACTIVE</dt>
            <dd>{(status.active ?? []).length}</dd>
          </div>
          <div>
            <dt>TASK</dt>
            <dd>
              <code>
                {spec.run?.task?.image ? `${spec.run.task.image}: ` : ""}
                {[...(spec.run?.task?.command ?? []), ...(spec.run?.task?.args ?? [])].join(" ") || "<image default>"}
              </code>
            </dd>
          </div>
          <div>
            <dt>RESTARTS</dt>
            <dd>
              {spec.run?.restartPolicy ?? "NEVER"}
              {spec.run?.restartPolicy === "ON_FAILURE" ? `, ${spec.run?.retryLimit ?? 6} attempts` : ""}
            </dd>
          </div>
        </dl>
      )}
      {job && (spec.schedules ?? []).length > 0 && (
        <section aria-labelledby="schedules-title">
          <h2 id="schedules-title">Schedules</h2>
          <div class="table-wrap">
            <table class="objects" id="schedules">
              <Head columns={["ID", "CRON", "TIME ZONE", "POLICY", "ENABLED", "LAST", "NEXT", "MISSED", "SKIPPED"]} />
              <tbody>
                {(spec.schedules ?? []).map((s: any) => {
                  const st = schedStatus(String(s?.id ?? "default"));
                  return (
                    <tr data-schedule={s?.id}>
                      <td>{s?.id ?? "default"}</td>
                      <td>
                        <code>{s?.cron}</code>
                      </td>
                      <td>{s?.timeZone ?? "UTC"}</td>
                      <td>{s?.concurrencyPolicy ?? "ALLOW"}</td>
                      <td>{s?.enabled === false ? "no" : "yes"}</td>
                      <td>
                        <When at={st.lastScheduleTime} now={now} />
                      </td>
                      <td>{st.error ? <span class="bad">{st.error}</span> : <When at={st.nextScheduleTime} now={now} />}</td>
                      <td>{st.missed ?? 0}</td>
                      <td>{st.skipped ?? 0}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </section>
      )}
      <section aria-labelledby="runs-title">
        <h2 id="runs-title">
          Runs <span class="muted">{runSnap.loaded ? all.length : "…"}</span>
        </h2>
        {runSnap.loaded && all.length === 0 ? (
          <p class="muted empty" id="no-runs">
            No runs kept.
          </p>
        ) : (
          <div class="table-wrap">
            <table class="objects runs" id="runs">
              <Head columns={["RUN", "TRIGGER", "PHASE", "STARTED", "DURATION", "ATTEMPTS", "MESSAGE", ""]} />
              <tbody>
                {all.map((r) => {
                  const rn = String(r?.metadata?.name ?? "");
                  const st = r?.status ?? {};
                  const ended = runEnded(st.phase);
                  const trigger = r?.spec?.trigger?.schedule ? `schedule ${r.spec.trigger.schedule}` : "manual";
                  return (
                    <tr data-run={rn} data-phase={st.phase ?? ""}>
                      <td>
                        <a href={objectHref("jobruns", namespace, rn)}>{rn}</a>
                      </td>
                      <td>{trigger}</td>
                      <td>
                        <Phase phase={st.phase} />
                        {r?.spec?.kill && !ended ? <span class="muted"> (killing)</span> : null}
                      </td>
                      <td>
                        <When at={st.startTime} now={now} />
                      </td>
                      <td>{duration(st.startTime, st.finishTime, now)}</td>
                      <td class="wrap">
                        <Attempts attempts={st.attempts ?? []} namespace={namespace} now={now} />
                      </td>
                      <td class="wrap message">{st.message ?? st.waiting?.message ?? ""}</td>
                      <td>
                        {!ended && mayKill && !r?.spec?.kill && (
                          <button type="button" class="danger kill" data-run={rn} onClick={() => kill(rn)}>
                            Kill
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <ObjectEvents kind="Job" namespace={namespace} name={name} uid={job?.metadata?.uid} />
      <details class="embedded" id="object">
        <summary>The job as YAML; edit, delete</summary>
        <ObjectPage slug="jobs" namespace={namespace} name={name} />
      </details>
    </section>
  );
}

/** A job with its schedules and runs, live; run now and kill a run when the user may. */
export function JobPage(props: { namespace: string; name: string }) {
  const ks = useKinds();
  if (ks.state === "loading") return <p class="loading">Loading…</p>;
  if (ks.state === "error") return <p class="error" role="alert">{ks.message}</p>;
  const find = (plural: string) => ks.value.find((k) => k.group === CORE_GROUP && k.plural === plural);
  const jobs = find("jobs");
  const runs = find("jobruns");
  if (!jobs || !runs) return <p class="error" role="alert">The server serves no jobs or job runs.</p>;
  return <JobOf jobs={jobs} runs={runs} namespace={props.namespace} name={props.name} />;
}
