// The pages: a dashboard, every kind, a kind's live list with its columns, one
// object live as YAML with the actions the user may take, and a YAML editor that
// creates or replaces an object and shows what the server refused and why.

import type { ComponentChildren } from "preact";
import { useMemo, useRef, useState } from "preact/hooks";
import { parse as parseYaml, stringify as yamlOf } from "yaml";

import {
  ApiError,
  type Cause,
  CORE_GROUP,
  collectionPath,
  type Kind,
  kindSlug,
  objectPath,
  request,
  sendJson,
} from "./api";
import { ClusterResources } from "./pages/cluster";
import { comparable, type DiffLine, diffLines } from "./diff";
import { locate, SchemaHelp, useSchema } from "./schema";
import { ObjectEvents, stamp, TaskLogs } from "./pages/tasks";
import { type Loaded, useCan, useKind, useKinds, useLive, useNow } from "./hooks";
import { listHref, navigate, objectHref } from "./router";
import { age, cell, defaultColumns, valueAt } from "./table";
import { byKey, type Snapshot, together } from "./watch";
import { LinkStatus, ListHead, matchesName } from "./widgets";

/** A kind that is loading, unknown or failed, as a page. */
export function KindGate(props: { slug: string; kind: Loaded<Kind | undefined>; children: (k: Kind) => ComponentChildren }) {
  const k = props.kind;
  if (k.state === "loading") return <p class="loading">Loading…</p>;
  if (k.state === "error") return <p class="error" role="alert">{k.message}</p>;
  if (!k.value) {
    return (
      <section>
        <h1>Unknown kind</h1>
        <p>
          The server serves no kind called <code>{props.slug}</code>. <a href="/ui/k">All kinds</a>
        </p>
      </section>
    );
  }
  return <>{props.children(k.value)}</>;
}

function countBy(snap: Snapshot, f: (o: any) => string): [string, number][] {
  const counts = new Map<string, number>();
  for (const o of snap.items.values()) {
    const k = f(o);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}

function Counts(props: { title: string; kind: Kind; snap: Snapshot; by: (o: any) => string; id: string }) {
  const rows = countBy(props.snap, props.by);
  return (
    <section class="card" id={props.id} aria-labelledby={`${props.id}-title`}>
      <h2 id={`${props.id}-title`}>
        <a href={listHref(kindSlug(props.kind))}>{props.title}</a>{" "}
        <span class="total" data-total={props.snap.items.size}>
          {props.snap.loaded ? props.snap.items.size : "…"}
        </span>
      </h2>
      {rows.length === 0 ? (
        <p class="muted">{props.snap.loaded ? "None." : "Loading…"}</p>
      ) : (
        <dl>
          {rows.map(([k, n]) => (
            <div class="count" data-name={k}>
              <dt>{k}</dt>
              <dd>{n}</dd>
            </div>
          ))}
        </dl>
      )}
    </section>
  );
}

/** A service's state in a word: waiting, deploying, healthy or not all healthy. */
export function serviceState(s: any): string {
  const want = Number(s?.spec?.instances ?? 0);
  if (s?.status?.waiting) return "waiting";
  if (s?.status?.deployment?.phase === "InProgress") return "deploying";
  if (Number(s?.status?.healthy ?? 0) >= want && Number(s?.status?.running ?? 0) >= want) return "healthy";
  return "not all healthy";
}

function DashboardOf(props: { kinds: Kind[] }) {
  const find = (plural: string) => props.kinds.find((k) => k.group === CORE_GROUP && k.plural === plural);
  const [nodes, tasks, services, events] = [find("nodes"), find("tasks"), find("services"), find("events")];
  const n = useLive(nodes, {});
  const t = useLive(tasks, {});
  const s = useLive(services, {});
  const e = useLive(events, {});
  // Bound volumes hold disk on their nodes: the resources count them.
  const volumes = find("volumes");
  const v = useLive(volumes, {});
  const now = useNow();
  const status = together(volumes ? [n, t, s, e, v] : [n, t, s, e]);
  const recent = [...e.items.values()]
    .sort((a, b) => stamp(b).localeCompare(stamp(a)))
    .slice(0, 10);
  return (
    <section>
      <div class="title">
        <h1>Dashboard</h1>
        <LinkStatus link={status.link} error={status.error} />
      </div>
      <div class="cards">
        {nodes && <Counts id="nodes" title="Nodes" kind={nodes} snap={n} by={(o) => o?.status?.phase ?? "Unknown"} />}
        {tasks && <Counts id="tasks" title="Tasks" kind={tasks} snap={t} by={(o) => o?.status?.phase ?? "PENDING"} />}
        {services && <Counts id="services" title="Services" kind={services} snap={s} by={serviceState} />}
      </div>
      {nodes && tasks && <ClusterResources nodes={n} tasks={t} volumes={volumes ? v : undefined} />}
      {events && (
        <section class="card wide" id="events">
          <h2>
            <a href={listHref("events")}>Recent events</a>
          </h2>
          {recent.length === 0 ? (
            <p class="muted">{e.loaded ? "None." : "Loading…"}</p>
          ) : (
            <ul class="events">
              {recent.map((ev) => (
                <li class={ev?.spec?.type === "Warning" ? "warning" : ""}>
                  <span class="muted">{age(stamp(ev) || undefined, now)}</span>{" "}
                  <strong>{ev?.spec?.reason}</strong>{" "}
                  <span class="muted">
                    {(ev?.spec?.involvedObject?.kind ?? "").toLowerCase()}/{ev?.spec?.involvedObject?.name}
                  </span>{" "}
                  {ev?.spec?.message}
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </section>
  );
}

/** Nodes, tasks by phase, services by state, resources allocated and free, and recent events, live. */
export function Dashboard() {
  const ks = useKinds();
  if (ks.state === "loading") return <p class="loading">Loading…</p>;
  if (ks.state === "error") return <p class="error" role="alert">{ks.message}</p>;
  return <DashboardOf kinds={ks.value} />;
}

/** Every kind the server serves, custom ones included. */
export function KindsPage() {
  const ks = useKinds();
  if (ks.state === "loading") return <p class="loading">Loading…</p>;
  if (ks.state === "error") return <p class="error" role="alert">{ks.message}</p>;
  const groups = new Map<string, Kind[]>();
  for (const k of ks.value) groups.set(k.group, [...(groups.get(k.group) ?? []), k]);
  return (
    <section>
      <h1>All kinds</h1>
      {[...groups.entries()].map(([g, list]) => (
        <section class="card wide">
          <h2>{g}</h2>
          <ul class="kinds">
            {[...list]
              .sort((a, b) => a.kind.localeCompare(b.kind))
              .map((k) => (
                <li>
                  <a href={listHref(kindSlug(k))} data-kind={k.plural}>
                    {k.kind}
                  </a>{" "}
                  <span class="muted">{k.plural}</span>
                </li>
              ))}
          </ul>
        </section>
      ))}
    </section>
  );
}

function ListOf(props: { kind: Kind; namespace?: string }) {
  const { kind, namespace } = props;
  const slug = kindSlug(kind);
  const snap = useLive(kind, { namespace });
  const now = useNow();
  const columns = defaultColumns(kind.columns);
  const allNamespaces = kind.namespaced && !namespace;
  const [q, setQ] = useState("");
  const rows = [...snap.items.values()].filter((o) => matchesName(o, q)).sort(byKey);
  return (
    <section>
      <ListHead kind={kind} namespace={namespace} snap={snap} search={[q, setQ]} />
      <div class="table-wrap">
        <table class="objects" data-kind={kind.plural}>
          <thead>
            <tr>
              {allNamespaces && <th scope="col">NAMESPACE</th>}
              <th scope="col">NAME</th>
              {columns.map((c) => (
                <th scope="col" title={c.description}>
                  {c.name.toUpperCase()}
                </th>
              ))}
              <th scope="col">AGE</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((o) => {
              const ns = o.metadata?.namespace as string | undefined;
              const name = String(o.metadata?.name ?? "");
              return (
                <tr data-key={`${ns ?? ""}/${name}`}>
                  {allNamespaces && <td>{ns}</td>}
                  <td>
                    <a href={objectHref(slug, kind.namespaced ? ns : undefined, name)}>{name}</a>
                  </td>
                  {columns.map((c) => (
                    <td data-column={c.name}>{cell(c, o, now)}</td>
                  ))}
                  <td>{age(o.metadata?.creationTimestamp, now)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {snap.loaded && rows.length === 0 && <p class="muted empty">No {kind.plural}{namespace ? ` in ${namespace}` : ""}.</p>}
    </section>
  );
}

/** A kind's objects with its columns, live. */
export function ListPage(props: { slug: string; namespace?: string }) {
  const kind = useKind(props.slug);
  return (
    <KindGate slug={props.slug} kind={kind}>
      {(k) => <ListOf kind={k} namespace={props.namespace} />}
    </KindGate>
  );
}

/**
 * The server's refusal: its message and each field it named; `at` says where a field
 * is (its line, and how to go there) when the refusal is of text being edited.
 */
export function Refusal(props: {
  error: { message: string; causes: Cause[] } | null;
  at?: (field: string) => { line: number; go: () => void } | null;
}) {
  if (!props.error) return null;
  return (
    <div class="error" role="alert" id="refusal">
      <p>{props.error.message}</p>
      {props.error.causes.length > 0 && (
        <ul>
          {props.error.causes.map((c) => {
            const where = c.field && props.at ? props.at(c.field) : null;
            return (
              <li data-field={c.field ?? ""}>
                {c.field && <code>{c.field}</code>} {c.message}
                {where && (
                  <>
                    {" "}
                    <button type="button" class="inline goto" onClick={where.go}>
                      line {where.line}
                    </button>
                  </>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}

export function refusalOf(e: unknown): { message: string; causes: Cause[] } {
  if (e instanceof ApiError) return { message: e.message, causes: e.causes };
  return { message: e instanceof Error ? e.message : String(e), causes: [] };
}

/** A YAML editor sending the object with `save`; shows what was refused. */
/** A preview's changes: taken away and added lines, with two lines around each. */
function Changes(props: { lines: DiffLine[] }) {
  const changed = props.lines.filter((l) => l.op !== " ").length;
  const near = (i: number) => props.lines.slice(Math.max(0, i - 2), i + 3).some((l) => l.op !== " ");
  const shown = props.lines.map((l, i) => ({ ...l, show: l.op !== " " || near(i) }));
  return (
    <section class="changes" id="changes" aria-labelledby="changes-title" data-changed={String(changed)}>
      <h3 id="changes-title">
        {changed === 0 ? "The write would change nothing" : `What the write would change (${changed} lines)`}
      </h3>
      {changed > 0 && (
        <pre class="yaml diff" id="diff">
          {shown.map((l, i) =>
            l.show ? (
              <span class={`d${l.op === "+" ? "add" : l.op === "-" ? "del" : "keep"}`}>
                {l.op} {l.text}
                {"\n"}
              </span>
            ) : i > 0 && shown[i - 1]!.show ? (
              <span class="dgap">{"  …\n"}</span>
            ) : null,
          )}
        </pre>
      )}
    </section>
  );
}

/**
 * A YAML editor: `save` gets the parsed object; what the server refuses is shown with
 * each field it names and, where that field is in the text, its line (a button that
 * selects it). With `kind`, the kind's fields are listed beside it.
 */
export function Editor(props: {
  initial: string;
  label: string;
  save: (obj: any) => Promise<void>;
  onCancel?: () => void;
  kind?: Kind;
  /** What the server would store, from a dry run of the write: offers a Preview. */
  preview?: (obj: any) => Promise<any>;
  /** The object as it is now (none when creating), what the preview is compared to. */
  current?: any;
}) {
  const [text, setText] = useState(props.initial);
  const [changes, setChanges] = useState<DiffLine[] | null>(null);
  const [error, setError] = useState<{ message: string; causes: Cause[] } | null>(null);
  const [busy, setBusy] = useState(false);
  const area = useRef<HTMLTextAreaElement>(null);
  const schema = useSchema(props.kind);
  // The text as an object, or the reason it is none.
  const parsed = (): { obj?: unknown } => {
    try {
      return { obj: parseYaml(text) };
    } catch (err) {
      setError({ message: `Not valid YAML: ${err instanceof Error ? err.message : err}`, causes: [] });
      return {};
    }
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    const { obj } = parsed();
    if (obj === undefined) return;
    setBusy(true);
    setError(null);
    try {
      await props.save(obj);
    } catch (err) {
      setError(refusalOf(err));
    } finally {
      setBusy(false);
    }
  };
  // A dry run: the server validates and answers what it would store, written nowhere.
  const previewNow = async () => {
    const { obj } = parsed();
    if (obj === undefined || !props.preview) return;
    setBusy(true);
    setError(null);
    setChanges(null);
    try {
      const would = await props.preview(obj);
      const before = props.current ? yamlOf(comparable(props.current)) : "";
      setChanges(diffLines(before, yamlOf(comparable(would))));
    } catch (err) {
      setError(refusalOf(err));
    } finally {
      setBusy(false);
    }
  };
  const select = (from: number, to: number) => {
    const a = area.current;
    if (!a) return;
    a.focus();
    a.setSelectionRange(from, Math.max(from, to));
  };
  return (
    <form class={props.kind ? "editor with-help" : "editor"} onSubmit={submit}>
      <div class="editor-main">
        <label for="yaml">YAML</label>
        <textarea
          id="yaml"
          ref={area}
          spellcheck={false}
          rows={Math.min(40, Math.max(12, text.split("\n").length + 2))}
          value={text}
          onInput={(e) => {
            setText((e.target as HTMLTextAreaElement).value);
            setChanges(null);
          }}
        />
        <Refusal
          error={error}
          at={(field) => {
            const where = locate(text, field);
            return where && { line: where.line, go: () => select(where.from, where.to) };
          }}
        />
        <div class="actions">
          <button id="save" type="submit" disabled={busy}>
            {props.label}
          </button>
          {props.preview && (
            <button id="preview" type="button" disabled={busy} onClick={previewNow} title="What the server would store (a dry run)">
              Preview
            </button>
          )}
          {props.onCancel && (
            <button type="button" onClick={props.onCancel}>
              Cancel
            </button>
          )}
        </div>
        {changes && <Changes lines={changes} />}
      </div>
      {props.kind && <SchemaHelp kind={props.kind} schema={schema} />}
    </form>
  );
}

function ObjectOf(props: { kind: Kind; namespace?: string; name: string }) {
  const { kind, name } = props;
  const namespace = kind.namespaced ? props.namespace : undefined;
  const slug = kindSlug(kind);
  const snap = useLive(kind, { namespace, fieldSelector: `metadata.name=${name}` });
  const mayUpdate = useCan("update", kind, namespace, name);
  const mayDelete = useCan("delete", kind, namespace, name);
  const scalable = Boolean(kind.subresources?.scale);
  const mayScale = useCan("update", scalable ? kind : null, namespace, name, "scale");
  const hasLog = Boolean(kind.subresources?.log);
  const mayLog = useCan("get", hasLog ? kind : null, namespace, name, "log");
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<{ message: string; causes: Cause[] } | null>(null);
  const obj = [...snap.items.values()].find((o) => o?.metadata?.name === name);
  const yaml = useMemo(() => (obj ? yamlOf(obj) : ""), [obj]);
  const remove = async () => {
    if (!window.confirm(`Delete ${kind.singular} ${name}?`)) return;
    try {
      await request(objectPath(kind, namespace, name), { method: "DELETE" });
      navigate(listHref(slug, namespace));
    } catch (e) {
      setError(refusalOf(e));
    }
  };
  return (
    <section>
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={listHref(slug)}>{kind.kind}</a>
        {namespace && (
          <>
            {" / "}
            <a href={listHref(slug, namespace)}>{namespace}</a>
          </>
        )}
      </nav>
      <div
        class="title"
        data-reviewed={String(mayUpdate !== undefined && mayDelete !== undefined && (!scalable || mayScale !== undefined))}
      >
        <h1>{name}</h1>
        <LinkStatus link={snap.link} error={snap.error} />
        {obj && mayUpdate && !editing && (
          <button id="edit" type="button" onClick={() => setEditing(true)}>
            Edit
          </button>
        )}
        {obj && mayDelete && (
          <button id="delete" class="danger" type="button" onClick={remove}>
            Delete
          </button>
        )}
      </div>
      <Refusal error={error} />
      {!obj && snap.loaded && (
        <p class="muted" id="gone">
          There is no {kind.singular} {name}
          {namespace ? ` in ${namespace}` : ""} (now).
        </p>
      )}
      {obj?.status?.waiting?.message && (
        <p class="waiting" id="waiting" role="note">
          <strong>Waiting:</strong> {String(obj.status.waiting.message)}
        </p>
      )}
      {obj && scalable && mayScale && !editing && (
        <Scale path={`${objectPath(kind, namespace, name)}/scale`} current={obj} specPath={scaleSpecPath(kind)} />
      )}
      {obj && !editing && (
        <>
          {kind.columns && kind.columns.length > 0 && (
            <dl class="fields">
              {kind.columns.map((c) => (
                <div>
                  <dt>{c.name.toUpperCase()}</dt>
                  <dd>{cell(c, obj)}</dd>
                </div>
              ))}
            </dl>
          )}
          {hasLog && mayLog && obj?.spec?.nodeName && (
            <TaskLogs path={`${objectPath(kind, namespace, name)}/log`} name={name} />
          )}
          {kind.group === CORE_GROUP && kind.plural === "tasks" && (
            <ObjectEvents kind={kind.kind} namespace={namespace} name={name} uid={obj?.metadata?.uid} />
          )}
          <pre class="yaml" id="yaml-view" tabIndex={0} aria-label="The object as YAML">
            {yaml}
          </pre>
        </>
      )}
      {obj && editing && (
        <Editor
          kind={kind}
          initial={yaml}
          label="Save"
          onCancel={() => setEditing(false)}
          current={obj}
          preview={(o) => sendJson("PUT", `${objectPath(kind, namespace, name)}?dryRun=All`, o)}
          save={async (o) => {
            await sendJson("PUT", objectPath(kind, namespace, name), o);
            setEditing(false);
          }}
        />
      )}
    </section>
  );
}

export function scaleSpecPath(kind: Kind): string {
  const scale = kind.subresources?.scale as { specReplicasPath?: string } | undefined;
  return scale?.specReplicasPath ?? ".spec.replicas";
}

/** Sets a scalable object's desired count through its `scale` subresource. */
export function Scale(props: { path: string; current: any; specPath: string }) {
  const desired = valueAt(props.current, props.specPath);
  const [value, setValue] = useState(String(desired ?? 0));
  const [error, setError] = useState<{ message: string; causes: Cause[] } | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) {
      setError({ message: "A count is a whole number, 0 or more.", causes: [] });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await sendJson("PUT", props.path, {
        apiVersion: "autoscaling/v1",
        kind: "Scale",
        spec: { replicas: n },
      });
    } catch (err) {
      setError(refusalOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="filter scale" onSubmit={submit}>
      <label for="replicas">Instances</label>
      <input
        id="replicas"
        type="number"
        min={0}
        value={value}
        onInput={(e) => setValue((e.target as HTMLInputElement).value)}
      />
      <button id="scale" type="submit" disabled={busy}>
        Scale
      </button>
      <span class="muted" id="scale-now">
        now {String(desired ?? 0)}
      </span>
      <Refusal error={error} />
    </form>
  );
}

/** One object, live, as YAML; edit and delete when the user may. */
export function ObjectPage(props: { slug: string; namespace?: string; name: string }) {
  const kind = useKind(props.slug);
  return (
    <KindGate slug={props.slug} kind={kind}>
      {(k) => <ObjectOf kind={k} namespace={props.namespace} name={props.name} />}
    </KindGate>
  );
}

function template(kind: Kind, namespace?: string): string {
  const metadata: Record<string, string> = { name: "" };
  if (kind.namespaced) metadata.namespace = namespace ?? "default";
  return yamlOf({ apiVersion: `${kind.group}/${kind.version}`, kind: kind.kind, metadata, spec: {} });
}

function NewOf(props: { kind: Kind; namespace?: string }) {
  const { kind } = props;
  const slug = kindSlug(kind);
  return (
    <section>
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={listHref(slug)}>{kind.kind}</a>
      </nav>
      <h1>New {kind.singular}</h1>
      <Editor
        kind={kind}
        initial={template(kind, props.namespace)}
        label="Create"
        preview={(o) => {
          const ns = kind.namespaced ? String(o?.metadata?.namespace ?? props.namespace ?? "default") : undefined;
          return sendJson("POST", `${collectionPath(kind, ns)}?dryRun=All`, o);
        }}
        save={async (o) => {
          const ns = kind.namespaced ? String(o?.metadata?.namespace ?? props.namespace ?? "default") : undefined;
          const created = await sendJson("POST", collectionPath(kind, ns), o);
          navigate(objectHref(slug, ns, String(created?.metadata?.name ?? "")));
        }}
      />
    </section>
  );
}

/** Creates an object of a kind from YAML. */
export function NewPage(props: { slug: string; namespace?: string }) {
  const kind = useKind(props.slug);
  return (
    <KindGate slug={props.slug} kind={kind}>
      {(k) => <NewOf kind={k} namespace={props.namespace} />}
    </KindGate>
  );
}
