// A service's own page: its counts and deployment, live from a watch of the service;
// its tasks, live from a watch of the tasks labelled with its name; why instances are
// not placed (every field of `status.waiting`), its conditions, template history and
// Events (deployments started and completed, refusals, backoff);
// and the actions the user's role allows — scale, restart, roll back, edit, delete —
// each the same API call the CLI makes (`corral scale`, `corral restart`,
// `corral rollout undo`, `corral edit`, `corral delete`).

import "./services.css";

import { useMemo, useState } from "preact/hooks";
import { stringify as yamlOf } from "yaml";

import { ApiError, type Cause, getJson, type Kind, kindSlug, objectPath, request, sendJson } from "../api";
import { useCan, useKind, useLive, useNow } from "../hooks";
import { Editor, KindGate, Refusal, refusalOf, Scale, scaleSpecPath, serviceState } from "../pages";
import { Head, LinkStatus, ListHead, matchesName } from "../widgets";
import { ObjectEvents } from "./tasks";
import { byKey } from "../watch";
import { listHref, navigate, objectHref } from "../router";
import { age } from "../table";

/** The label the services controller puts on each task of a service: its name. */
export const SERVICE_LABEL = "corral.dev/service";
/** The label naming the template revision a task runs. */
export const REVISION_LABEL = "corral.dev/service-revision";

/** Read-modify-write attempts of a rollback before a conflict is shown (as the CLI). */
const UPDATE_ATTEMPTS = 5;

type Problem = { message: string; causes: Cause[] } | null;

/** Now as the CLI writes `restartedAt`: RFC 3339 in UTC with microseconds. */
function nowMicro(): string {
  return new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** `command` and `args` as one line, as `corral rollout history` shows them. */
function commandLine(t: any): string {
  const words = [...(t?.command ?? []), ...(t?.args ?? [])].map((w: unknown) => {
    const s = String(w);
    return s === "" || /[\s'"\\$`]/.test(s) ? `'${s.replace(/'/g, "'\\''")}'` : s;
  });
  return words.length === 0 ? "<image default>" : words.join(" ");
}

/** Where the rollout is, in the words of `corral rollout status`. */
export function progressLine(svc: any): string {
  const name = svc?.metadata?.name ?? "";
  const st = svc?.status;
  if (!st) return `Waiting for the services controller to pick up service/${name}...`;
  const generation = Number(svc?.metadata?.generation ?? 0);
  const observed = Number(st.observedGeneration ?? 0);
  if (observed < generation) {
    return `Waiting for the services controller to observe generation ${generation} of service/${name} (it has seen ${observed})...`;
  }
  const d = st.deployment;
  if (!d) return `Waiting for the first deployment of service/${name}...`;
  if (Number(d.revision) !== Number(st.revision ?? 0)) {
    return `Waiting for the deployment of revision ${st.revision} to start...`;
  }
  const m = d.message || st.waiting?.message;
  const detail = m ? ` (${m})` : "";
  switch (d.phase) {
    case "Complete":
      return `service/${name} successfully rolled out: revision ${d.revision}, ${d.updated} of ${d.target} updated`;
    case "Superseded":
      return `Deployment of revision ${d.revision} was superseded; waiting for the next one...`;
    default:
      return `Waiting for deployment of revision ${d.revision}: ${d.updated} of ${d.target} updated, ${d.old} old remaining${detail}...`;
  }
}

/** The revision a rollback goes to: `wanted`, else the latest kept before `current`. */
function undoTarget(history: any[], current: number, wanted: number | undefined, name: string): any {
  const kept = history.length === 0 ? "none yet" : history.map((r) => r.revision).join(", ");
  if (wanted !== undefined) {
    const r = history.find((h) => Number(h.revision) === wanted);
    if (!r) throw new Error(`service/${name} keeps no revision ${wanted}; the revisions kept are: ${kept}`);
    return r;
  }
  const before = history.filter((h) => Number(h.revision) < current);
  if (before.length === 0) {
    throw new Error(
      `service/${name} keeps no revision before its current one (${current}) to go back to; the revisions kept are: ${kept}`,
    );
  }
  return before.reduce((a, b) => (Number(b.revision) > Number(a.revision) ? b : a));
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * `corral rollout undo`: the spec's template and `restartedAt` set back to an earlier
 * revision's, written with the `resourceVersion` read (read again and retried when
 * someone else wrote meanwhile). Answers what was done.
 */
async function rollBack(kind: Kind, namespace: string, name: string, wanted?: number): Promise<string> {
  const path = objectPath(kind, namespace, name);
  for (let attempt = 1; ; attempt++) {
    const svc = await getJson(path);
    const st = svc.status ?? {};
    const target = undoTarget(st.history ?? [], Number(st.revision ?? 0), wanted, name);
    if (same(svc.spec?.template, target.template) && same(svc.spec?.restartedAt, target.restartedAt)) {
      return `service/${name} already has the template of revision ${target.revision}; nothing to do`;
    }
    svc.spec.template = target.template;
    if (target.restartedAt === undefined) delete svc.spec.restartedAt;
    else svc.spec.restartedAt = target.restartedAt;
    delete svc.status;
    try {
      await sendJson("PUT", path, svc);
      return `service/${name} rolled back to revision ${target.revision}`;
    } catch (e) {
      if (!(e instanceof ApiError && e.code === 409 && attempt < UPDATE_ATTEMPTS)) throw e;
    }
  }
}

/** A task's host ports: `name:port` from its status, else those its spec asks for. */
function hostPorts(t: any): string {
  const observed = Object.entries((t?.status?.ports ?? {}) as Record<string, number>);
  if (observed.length > 0) return observed.map(([n, p]) => `${n}:${p}`).join(", ");
  const asked = ((t?.spec?.ports ?? []) as any[]).filter((p) => p?.hostPort);
  return asked.length > 0 ? asked.map((p) => `${p.name}:${p.hostPort}`).join(", ") : "—";
}

/** A task's health: its checks' last answer, or that it has none. */
function health(t: any): { text: string; state: string; title?: string } {
  const h = t?.status?.health;
  if (!h) return { text: (t?.spec?.healthChecks ?? []).length > 0 ? "unknown" : "no checks", state: "none" };
  if (h.healthy) return { text: "healthy", state: "true" };
  const failures = Number(h.consecutiveFailures ?? 0);
  return {
    text: `unhealthy${failures ? ` (${failures} failure${failures === 1 ? "" : "s"})` : ""}`,
    state: "false",
    title: h.message,
  };
}

function Tasks(props: { tasks: any[]; now: number; loaded: boolean; current: number }) {
  const { tasks, now } = props;
  return (
    <section class="card wide" id="tasks" aria-labelledby="tasks-title" data-count={tasks.length}>
      <h2 id="tasks-title">
        Tasks <span class="muted">{props.loaded ? tasks.length : "…"}</span>
      </h2>
      {props.loaded && tasks.length === 0 ? (
        <p class="muted">No tasks.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <Head columns={["NAME", "REVISION", "PHASE", "NODE", "HOST PORTS", "HEALTH", "AGE"]} />
            <tbody>
              {tasks.map((t) => {
                const ns = t.metadata?.namespace as string | undefined;
                const name = String(t.metadata?.name ?? "");
                const phase = String(t.status?.phase ?? "PENDING");
                const revision = String(t.metadata?.labels?.[REVISION_LABEL] ?? "");
                const h = health(t);
                return (
                  <tr data-key={`${ns ?? ""}/${name}`} data-phase={phase} data-revision={revision} data-healthy={h.state}>
                    <td>
                      <a href={objectHref("tasks", ns, name)}>{name}</a>
                    </td>
                    <td>
                      {revision}
                      {revision && Number(revision) !== props.current ? <span class="muted"> (old)</span> : null}
                    </td>
                    <td class={`phase phase-${phase.toLowerCase()}`} title={t.status?.message}>
                      {phase}
                      {t.status?.reason ? <span class="muted"> {t.status.reason}</span> : null}
                    </td>
                    <td>{t.spec?.nodeName ?? <span class="muted">not placed</span>}</td>
                    <td>{hostPorts(t)}</td>
                    <td class={`health health-${h.state}`} title={h.title}>
                      {h.text}
                    </td>
                    <td>{age(t.status?.startTime ?? t.metadata?.creationTimestamp, now)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Deployment(props: { svc: any; now: number }) {
  const st = props.svc?.status ?? {};
  const d = st.deployment;
  return (
    <section
      class="card wide"
      id="deployment"
      aria-labelledby="deployment-title"
      data-revision={String(d?.revision ?? "")}
      data-phase={String(d?.phase ?? "")}
    >
      <h2 id="deployment-title">Deployment</h2>
      <p id="progress">{progressLine(props.svc)}</p>
      {d && (
        <dl class="fields">
          <div>
            <dt>REVISION</dt>
            <dd>{d.revision}</dd>
          </div>
          <div>
            <dt>PHASE</dt>
            <dd>{d.phase}</dd>
          </div>
          <div>
            <dt>UPDATED</dt>
            <dd>
              <progress value={Number(d.updated ?? 0)} max={Math.max(1, Number(d.target ?? 0))} /> {d.updated} of{" "}
              {d.target}
            </dd>
          </div>
          <div>
            <dt>OLD LEFT</dt>
            <dd>{d.old}</dd>
          </div>
          <div>
            <dt>STARTED</dt>
            <dd>{d.startTime ? `${age(d.startTime, props.now)} ago` : "<unknown>"}</dd>
          </div>
          {d.message && (
            <div>
              <dt>DETAIL</dt>
              <dd>{d.message}</dd>
            </div>
          )}
        </dl>
      )}
    </section>
  );
}

/** Every field of `status.waiting`: how many wait, what turned the offers down, backoff. */
function Waiting(props: { waiting: any; now: number }) {
  const w = props.waiting;
  const refusals: any[] = w.refusals ?? [];
  return (
    <section class="waiting" id="waiting" role="note">
      <p>
        <strong>Waiting:</strong> {String(w.message ?? "")}
      </p>
      <p class="muted">
        {w.instances ?? 0} instance(s) not placed; {w.offersExamined ?? 0} offer(s) examined in the last round
        {w.backoffUntil ? `; next launch not before ${w.backoffUntil} (${age(w.backoffUntil, props.now)} ago)` : ""}.
      </p>
      {refusals.length > 0 && (
        <div class="table-wrap">
          <table id="refusals">
            <Head columns={["TURNED DOWN BY", "OFFERS", "NODES"]} />
            <tbody>
              {refusals.map((r) => (
                <tr data-reason={r.reason}>
                  <td>{r.reason}</td>
                  <td>{r.offers}</td>
                  <td>{r.nodes}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Conditions(props: { svc: any; now: number }) {
  const st = props.svc?.status ?? {};
  const conditions: any[] = st.conditions ?? [];
  if (conditions.length === 0 && !st.consecutiveFailures) return null;
  return (
    <section class="card wide" id="conditions" aria-labelledby="conditions-title">
      <h2 id="conditions-title">Conditions</h2>
      {st.consecutiveFailures ? (
        <p class="warning-text">
          {st.consecutiveFailures} failed launch(es) in a row
          {st.lastFailureTime ? `, the last ${age(st.lastFailureTime, props.now)} ago` : ""}.
        </p>
      ) : null}
      {conditions.length > 0 && (
        <div class="table-wrap">
          <table>
            <Head columns={["TYPE", "STATUS", "REASON", "MESSAGE", "SINCE"]} />
            <tbody>
              {conditions.map((c) => (
                <tr data-type={c.type} data-status={c.status}>
                  <td>{c.type}</td>
                  <td>{c.status}</td>
                  <td>{c.reason ?? ""}</td>
                  <td class="wrap">{c.message ?? ""}</td>
                  <td>{c.lastTransitionTime ? age(c.lastTransitionTime, props.now) : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function History(props: { svc: any; mayRollBack: boolean; onRollBack: (revision: number) => void; busy: boolean }) {
  const st = props.svc?.status ?? {};
  const history: any[] = st.history ?? [];
  const current = Number(st.revision ?? 0);
  return (
    <section class="card wide" id="history" aria-labelledby="history-title" data-count={history.length}>
      <h2 id="history-title">Template revisions</h2>
      {history.length === 0 ? (
        <p class="muted">None recorded yet: the services controller records each template it deploys.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">REVISION</th>
                <th scope="col">TIME</th>
                <th scope="col">IMAGE</th>
                <th scope="col">COMMAND</th>
                {props.mayRollBack && <th scope="col"></th>}
              </tr>
            </thead>
            <tbody>
              {[...history].reverse().map((r) => {
                const n = Number(r.revision);
                return (
                  <tr data-revision={String(n)} data-current={String(n === current)}>
                    <td>
                      {n}
                      {n === current ? " (current)" : ""}
                      {r.restartedAt ? <span class="muted" title={`restarted at ${r.restartedAt}`}> restart</span> : null}
                    </td>
                    <td>{r.time ?? "<unknown>"}</td>
                    <td>{r.template?.image ?? "<none>"}</td>
                    <td class="wrap">
                      <code>{commandLine(r.template)}</code>
                    </td>
                    {props.mayRollBack && (
                      <td>
                        {n !== current && (
                          <button type="button" disabled={props.busy} onClick={() => props.onRollBack(n)}>
                            Roll back to {n}
                          </button>
                        )}
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function ServiceOf(props: { kind: Kind; tasksKind: Kind | undefined; namespace: string; name: string }) {
  const { kind, tasksKind, namespace, name } = props;
  const slug = kindSlug(kind);
  const path = objectPath(kind, namespace, name);
  const snap = useLive(kind, { namespace, fieldSelector: `metadata.name=${name}` });
  const tasks = useLive(tasksKind, { namespace, labelSelector: `${SERVICE_LABEL}=${name}` });
  const now = useNow();
  const mayUpdate = useCan("update", kind, namespace, name);
  const mayPatch = useCan("patch", kind, namespace, name);
  const mayDelete = useCan("delete", kind, namespace, name);
  const mayScale = useCan("update", kind, namespace, name, "scale");
  const [editing, setEditing] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Problem>(null);
  const [done, setDone] = useState("");
  const svc = [...snap.items.values()].find((o) => o?.metadata?.name === name);
  const yaml = useMemo(() => (svc ? yamlOf(svc) : ""), [svc]);
  const current = Number(svc?.status?.revision ?? 0);
  const rows = [...tasks.items.values()].sort((a, b) =>
    String(a.metadata?.name ?? "").localeCompare(String(b.metadata?.name ?? "")),
  );
  const act = async (what: string, f: () => Promise<string>) => {
    if (!window.confirm(what)) return;
    setBusy(true);
    setError(null);
    setDone("");
    try {
      setDone(await f());
    } catch (e) {
      setError(refusalOf(e));
    } finally {
      setBusy(false);
    }
  };
  // `corral restart service/NAME`: a new revision of the same template.
  const restart = () =>
    act(`Restart service ${name}? Every task is replaced, as a deployment.`, async () => {
      await request(path, {
        method: "PATCH",
        headers: { "Content-Type": "application/merge-patch+json" },
        body: JSON.stringify({ spec: { restartedAt: nowMicro() } }),
      });
      return `service/${name} restarted`;
    });
  const rollBackTo = (revision?: number) =>
    act(
      revision === undefined
        ? `Roll service ${name} back to its previous template?`
        : `Roll service ${name} back to the template of revision ${revision}?`,
      () => rollBack(kind, namespace, name, revision),
    );
  const remove = () =>
    act(`Delete service ${name}? Its tasks are killed.`, async () => {
      await request(path, { method: "DELETE" });
      navigate(listHref(slug, namespace));
      return `service/${name} deleted`;
    });
  const history: any[] = svc?.status?.history ?? [];
  const canGoBack = history.some((h) => Number(h.revision) < current);
  const reviewed = [mayUpdate, mayPatch, mayDelete, mayScale].every((x) => x !== undefined);
  return (
    <section class="service">
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={listHref(slug)}>{kind.kind}</a>
        {" / "}
        <a href={listHref(slug, namespace)}>{namespace}</a>
      </nav>
      <div class="title" data-reviewed={String(reviewed)}>
        <h1>{name}</h1>
        <LinkStatus link={snap.link} error={snap.error} />
        {svc && !editing && (
          <span class="actions">
            {mayPatch && (
              <button id="restart" type="button" disabled={busy} onClick={restart}>
                Restart
              </button>
            )}
            {mayUpdate && (
              <button
                id="rollback"
                type="button"
                disabled={busy || !canGoBack}
                title={canGoBack ? "Back to the previous template (corral rollout undo)" : "No earlier revision is kept"}
                onClick={() => rollBackTo()}
              >
                Roll back
              </button>
            )}
            {mayUpdate && (
              <button id="edit" type="button" onClick={() => setEditing(true)}>
                Edit
              </button>
            )}
            {mayDelete && (
              <button id="delete" class="danger" type="button" disabled={busy} onClick={remove}>
                Delete
              </button>
            )}
          </span>
        )}
      </div>
      <Refusal error={error} />
      {done && (
        <p class="muted" id="done" role="status">
          {done}
        </p>
      )}
      {!svc && snap.loaded && (
        <p class="muted" id="gone">
          There is no service {name} in {namespace} (now).
        </p>
      )}
      {svc && editing && (
        <Editor
          kind={kind}
          initial={yaml}
          label="Save"
          onCancel={() => setEditing(false)}
          current={svc}
          preview={(o) => sendJson("PUT", `${path}?dryRun=All`, o)}
          save={async (o) => {
            await sendJson("PUT", path, o);
            setEditing(false);
          }}
        />
      )}
      {svc && !editing && (
        <>
          <dl class="fields" id="counts">
            {(
              [
                ["INSTANCES", svc.spec?.instances ?? 0],
                ["STAGED", svc.status?.staged ?? 0],
                ["RUNNING", svc.status?.running ?? 0],
                ["HEALTHY", svc.status?.healthy ?? 0],
                ["REVISION", current || "<none>"],
                ["IMAGE", svc.spec?.template?.image ?? "<none>"],
              ] as [string, unknown][]
            ).map(([k, v]) => (
              <div data-field={k.toLowerCase()}>
                <dt>{k}</dt>
                <dd>{String(v)}</dd>
              </div>
            ))}
          </dl>
          {mayScale && <Scale path={`${path}/scale`} current={svc} specPath={scaleSpecPath(kind)} />}
          {svc.status?.waiting && <Waiting waiting={svc.status.waiting} now={now} />}
          <Deployment svc={svc} now={now} />
          {tasks.error && tasks.link !== "live" && (
            <p class="error" role="alert">
              Tasks: {tasks.error}
            </p>
          )}
          <Tasks tasks={rows} now={now} loaded={tasks.loaded} current={current} />
          <Conditions svc={svc} now={now} />
          <History svc={svc} mayRollBack={Boolean(mayUpdate)} busy={busy} onRollBack={(n) => rollBackTo(n)} />
          <ObjectEvents kind="Service" namespace={namespace} name={name} uid={svc.metadata?.uid} />
          <details class="card wide">
            <summary>YAML</summary>
            <pre class="yaml" id="yaml-view" tabIndex={0} aria-label="The service as YAML">
              {yaml}
            </pre>
          </details>
        </>
      )}
    </section>
  );
}

/** A service's page (`/ui/k/services/<namespace>/<name>`), live. */
export function ServicePage(props: { namespace: string; name: string }) {
  const kind = useKind("services");
  const tasksKind = useKind("tasks");
  return (
    <KindGate slug="services" kind={kind}>
      {(k) =>
        tasksKind.state === "loading" ? (
          <p class="loading">Loading…</p>
        ) : (
          <ServiceOf
            kind={k}
            tasksKind={tasksKind.state === "ok" ? tasksKind.value : undefined}
            namespace={props.namespace}
            name={props.name}
          />
        )
      }
    </KindGate>
  );
}

/**
 * A row's actions, as Marathon's list offered them: scale, restart, delete — each
 * offered when the user's role allows it in the service's namespace, each the call
 * the service's page makes.
 */
function RowActions(props: { kind: Kind; svc: any }) {
  const { kind, svc } = props;
  const ns = String(svc?.metadata?.namespace ?? "");
  const name = String(svc?.metadata?.name ?? "");
  const path = objectPath(kind, ns, name);
  const mayScale = useCan("update", kind, ns, undefined, "scale");
  const mayPatch = useCan("patch", kind, ns);
  const mayDelete = useCan("delete", kind, ns);
  const [count, setCount] = useState(String(svc?.spec?.instances ?? 1));
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<Problem>(null);
  if (!mayScale && !mayPatch && !mayDelete) {
    // Marked once every review answered no, so that "nothing offered" can be told
    // from "not asked yet".
    const answered = [mayScale, mayPatch, mayDelete].every((x) => x === false);
    return answered ? <span class="row-actions-none" data-service={`${ns}/${name}`} /> : null;
  }
  const act = async (confirmation: string | null, f: () => Promise<unknown>) => {
    if (confirmation && !window.confirm(confirmation)) return;
    setBusy(true);
    setSaid(null);
    try {
      await f();
    } catch (e) {
      setSaid(refusalOf(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <details class="row-actions" data-service={`${ns}/${name}`}>
      <summary aria-label={`Actions on service ${name}`}>Actions</summary>
      <div class="menu">
        {mayScale && (
          <form
            class="row-scale"
            onSubmit={(e) => {
              e.preventDefault();
              const n = Number(count);
              if (!Number.isInteger(n) || n < 0) {
                setSaid({ message: "A count is a whole number, 0 or more.", causes: [] });
                return;
              }
              void act(null, () =>
                sendJson("PUT", `${path}/scale`, { apiVersion: "autoscaling/v1", kind: "Scale", spec: { replicas: n } }),
              );
            }}
          >
            <label>
              Instances{" "}
              <input
                type="number"
                min={0}
                class="row-count"
                value={count}
                onInput={(e) => setCount((e.target as HTMLInputElement).value)}
              />
            </label>{" "}
            <button type="submit" class="row-scale-go" disabled={busy}>
              Scale
            </button>
          </form>
        )}
        {mayPatch && (
          <button
            type="button"
            class="row-restart"
            disabled={busy}
            onClick={() =>
              act(`Restart service ${name}? Every task is replaced, as a deployment.`, () =>
                request(path, {
                  method: "PATCH",
                  headers: { "Content-Type": "application/merge-patch+json" },
                  body: JSON.stringify({ spec: { restartedAt: nowMicro() } }),
                }),
              )
            }
          >
            Restart
          </button>
        )}
        {mayDelete && (
          <button
            type="button"
            class="danger row-delete"
            disabled={busy}
            onClick={() => act(`Delete service ${name}? Its tasks are killed.`, () => request(path, { method: "DELETE" }))}
          >
            Delete
          </button>
        )}
        <Refusal error={said} />
      </div>
    </details>
  );
}

function ServicesOf(props: { kind: Kind; namespace?: string }) {
  const { kind, namespace } = props;
  const slug = kindSlug(kind);
  const snap = useLive(kind, { namespace });
  const now = useNow();
  const [q, setQ] = useState("");
  const rows = [...snap.items.values()]
    .filter((o) => matchesName(o, q))
    .sort(byKey);
  return (
    <section class="service">
      <ListHead kind={kind} namespace={namespace} snap={snap} search={[q, setQ]} />
      <div class="table-wrap">
        <table class="objects" data-kind={kind.plural}>
          <Head columns={[!namespace && "NAMESPACE", "NAME", "INSTANCES", "RUNNING", "HEALTHY", "STATE", "DEPLOYMENT", "AGE", ""]} />
          <tbody>
            {rows.map((s) => {
              const ns = String(s.metadata?.namespace ?? "");
              const name = String(s.metadata?.name ?? "");
              const d = s.status?.deployment;
              const state = serviceState(s);
              return (
                <tr data-key={`${ns}/${name}`} data-state={state}>
                  {!namespace && <td>{ns}</td>}
                  <td>
                    <a href={objectHref(slug, ns, name)}>{name}</a>
                  </td>
                  <td>{s.spec?.instances ?? 1}</td>
                  <td>{s.status?.running ?? 0}</td>
                  <td>{s.status?.healthy ?? 0}</td>
                  <td title={s.status?.waiting?.message}>{state}</td>
                  <td>
                    {d ? (
                      <>
                        <progress value={Number(d.updated ?? 0)} max={Math.max(1, Number(d.target ?? 0))} /> r
                        {d.revision} {d.phase} {d.updated}/{d.target}
                      </>
                    ) : (
                      <span class="muted">&lt;none&gt;</span>
                    )}
                  </td>
                  <td>{age(s.metadata?.creationTimestamp, now)}</td>
                  <td>
                    <RowActions kind={kind} svc={s} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {snap.loaded && rows.length === 0 && (
        <p class="muted empty">No services{namespace ? ` in ${namespace}` : ""}.</p>
      )}
    </section>
  );
}

/** The services (`/ui/k/services`), live: counts, state and deployment progress. */
export function ServicesPage(props: { namespace?: string }) {
  const kind = useKind("services");
  return (
    <KindGate slug="services" kind={kind}>
      {(k) => <ServicesOf kind={k} namespace={props.namespace} />}
    </KindGate>
  );
}
