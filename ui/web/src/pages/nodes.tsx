// The nodes: a list with each node's state, attributes, reservations and capacity
// against what is allocated on it; and a node's page with the same, its tasks and
// volumes, all live. "Mark unschedulable" / "Mark schedulable" set
// `spec.unschedulable` (no new task is placed on the node; running ones are left
// alone), offered when the user may patch the node.
//
// What is allocated is counted here, in the page, as the server's node ledger counts
// it (`../resources`): the resources of every task bound to the node that has not
// ended, and the size of every volume bound to it, from watches of those tasks and
// volumes (selected by the server on a node's page; all of them on the list).

import "./style.css";

import { useState } from "preact/hooks";

import { type Cause, CORE_GROUP, type Kind, objectPath, request } from "../api";
import { useCan, useKinds, useLive, useNow } from "../hooks";
import { ObjectPage, Refusal, refusalOf } from "../pages";
import { Head, LinkStatus, ListHead, matchesName, ShareMeter } from "../widgets";
import { UsageTable } from "./cluster";
import { byKey, together } from "../watch";
import { listHref, objectHref } from "../router";
import { allocated, byNode, cores, holds, hostPorts, portCount, resourcesOf, volumeHolds, ZERO } from "../resources";
import { age } from "../table";

function NodeOf(props: { nodes: Kind; tasks: Kind; volumes?: Kind; name: string }) {
  const { nodes, tasks, volumes, name } = props;
  const nodeSnap = useLive(nodes, { fieldSelector: `metadata.name=${name}` });
  const taskSnap = useLive(tasks, { fieldSelector: `spec.nodeName=${name}` });
  const volumeSnap = useLive(volumes, { fieldSelector: `spec.nodeName=${name}` });
  const mayPatch = useCan("patch", nodes, undefined, name);
  const now = useNow();
  const [error, setError] = useState<{ message: string; causes: Cause[] } | null>(null);
  const [busy, setBusy] = useState(false);
  const node = [...nodeSnap.items.values()].find((o) => o?.metadata?.name === name);
  const spec = node?.spec ?? {};
  const status = node?.status ?? {};
  const capacity = resourcesOf(status.capacity);
  const onNode = [...taskSnap.items.values()].filter((t) => t?.spec?.nodeName === name);
  const onNodeVolumes = [...volumeSnap.items.values()].filter((v) => v?.spec?.nodeName === name && volumeHolds(v));
  const { total, byRole } = allocated(onNode, onNodeVolumes);
  const phase = String(status.phase ?? "Pending");
  const unschedulable = spec.unschedulable === true;
  const attributes = Object.entries((spec.attributes ?? {}) as Record<string, string>);
  const reservations = Object.entries((spec.reservations ?? {}) as Record<string, any>);
  const portsUsed = hostPorts(onNode);
  // Live tasks first, then the newest.
  onNode.sort((a, b) => {
    const live = Number(holds(b)) - Number(holds(a));
    if (live !== 0) return live;
    return String(b?.metadata?.creationTimestamp ?? "").localeCompare(String(a?.metadata?.creationTimestamp ?? ""));
  });
  const linked = together(volumes ? [nodeSnap, taskSnap, volumeSnap] : [nodeSnap, taskSnap]);

  const setSchedulable = async (yes: boolean) => {
    setBusy(true);
    setError(null);
    try {
      // As a merge patch: `null` takes the field away (schedulable is its default).
      await request(objectPath(nodes, undefined, name), {
        method: "PATCH",
        headers: { "Content-Type": "application/merge-patch+json" },
        body: JSON.stringify({ spec: { unschedulable: yes ? null : true } }),
      });
    } catch (e) {
      setError(refusalOf(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="node-page" data-reviewed={String(mayPatch !== undefined)}>
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={listHref("nodes")}>Node</a>
      </nav>
      <div class="title">
        <h1>{name}</h1>
        <LinkStatus link={linked.link} error={linked.error} />
        {node && mayPatch && (
          <button
            id="schedulable"
            type="button"
            class={unschedulable ? "" : "danger"}
            disabled={busy}
            data-unschedulable={String(unschedulable)}
            onClick={() => setSchedulable(unschedulable)}
          >
            {unschedulable ? "Mark schedulable" : "Mark unschedulable"}
          </button>
        )}
      </div>
      <Refusal error={error} />
      {!node && nodeSnap.loaded && (
        <p class="muted" id="gone">
          There is no node {name} (now).
        </p>
      )}
      {node && (
        <>
          <p id="node-state" data-phase={phase} data-unschedulable={String(unschedulable)}>
            <span class={`phase phase-${phase.toLowerCase()}`}>{phase}</span>
            {unschedulable && (
              <>
                {" · "}
                <strong class="warn">Unschedulable</strong>
                <span class="muted"> — no new task is placed here; running tasks go on</span>
              </>
            )}
            {status.message && <span class="muted"> — {String(status.message)}</span>}
            {status.lastTransitionTime && (
              <span class="muted"> (since {age(status.lastTransitionTime, now)} ago)</span>
            )}
          </p>
          <dl class="fields" id="node-fields">
            <div>
              <dt>ADDRESS</dt>
              <dd>{status.address ?? "<none>"}</dd>
            </div>
            <div>
              <dt>AGENT</dt>
              <dd>
                {status.agentVersion ?? "<unknown>"}
                {status.agentEndpoint ? <span class="muted"> at {status.agentEndpoint}</span> : null}
              </dd>
            </div>
            <div>
              <dt>PORTS</dt>
              <dd>
                {(status.portRanges ?? []).map((r: any) => `${r?.begin}-${r?.end}`).join(", ") || "<none>"}
                {portsUsed.length > 0 && <span class="muted"> ({portsUsed.length} in use)</span>}
              </dd>
            </div>
            <div>
              <dt>AGE</dt>
              <dd>{age(node?.metadata?.creationTimestamp, now)}</dd>
            </div>
          </dl>
          <section aria-labelledby="capacity-title">
            <h2 id="capacity-title">Capacity and allocated</h2>
            <div class="table-wrap">
              <UsageTable
                id="capacity"
                share
                rows={[
                  { name: "cpus", unit: "cores", capacity: capacity.cpus, used: total.cpus, fmt: cores },
                  { name: "mem", unit: "MiB", capacity: capacity.mem, used: total.mem, fmt: String },
                  { name: "disk", unit: "MiB", capacity: capacity.disk, used: total.disk, fmt: String },
                ]}
              />
            </div>
            <p class="muted">
              Allocated: what the node's tasks that have not ended asked for, and the disk of the volumes bound to it
              ({onNodeVolumes.length}).
            </p>
          </section>
          <div class="cards">
            <section class="card" id="attributes" aria-labelledby="attributes-title">
              <h2 id="attributes-title">Attributes</h2>
              {attributes.length === 0 ? (
                <p class="muted">None.</p>
              ) : (
                <dl>
                  {attributes.map(([k, v]) => (
                    <div class="count" data-name={k}>
                      <dt>{k}</dt>
                      <dd>{v}</dd>
                    </div>
                  ))}
                </dl>
              )}
            </section>
            <section class="card" id="reservations" aria-labelledby="reservations-title">
              <h2 id="reservations-title">Reservations</h2>
              {reservations.length === 0 ? (
                <p class="muted">None: every resource is offered to any role.</p>
              ) : (
                <table class="compact">
                  <Head columns={["ROLE", "CPUS", "MEM", "DISK", "ALLOCATED TO ROLE"]} />
                  <tbody>
                    {reservations.map(([role, r]) => {
                      const res = resourcesOf(r);
                      const used = byRole.get(role) ?? ZERO;
                      return (
                        <tr data-role={role}>
                          <td>{role}</td>
                          <td>{cores(res.cpus)}</td>
                          <td>{res.mem}</td>
                          <td>{res.disk}</td>
                          <td>
                            {cores(used.cpus)} cpus, {used.mem} MiB, {used.disk} MiB disk
                          </td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              )}
            </section>
          </div>
        </>
      )}
      <section aria-labelledby="tasks-title">
        <h2 id="tasks-title">
          Tasks <span class="muted">{taskSnap.loaded ? onNode.length : "…"}</span>
        </h2>
        {taskSnap.loaded && onNode.length === 0 ? (
          <p class="muted empty" id="no-tasks">
            No tasks on this node.
          </p>
        ) : (
          <div class="table-wrap">
            <table class="objects" id="node-tasks">
              <Head columns={["NAMESPACE", "NAME", "STATUS", "CPUS", "MEM(MiB)", "DISK(MiB)", "ROLE", "OWNER", "AGE"]} />
              <tbody>
                {onNode.map((t) => {
                  const ns = String(t?.metadata?.namespace ?? "");
                  const tn = String(t?.metadata?.name ?? "");
                  const r = resourcesOf(t?.spec?.resources);
                  const owner = (t?.metadata?.ownerReferences ?? [])[0];
                  return (
                    <tr data-key={`${ns}/${tn}`} data-phase={t?.status?.phase ?? ""} class={holds(t) ? "" : "ended"}>
                      <td>{ns}</td>
                      <td>
                        <a href={objectHref("tasks", ns, tn)}>{tn}</a>
                      </td>
                      <td>{t?.status?.phase ?? "STAGING"}</td>
                      <td>{cores(r.cpus)}</td>
                      <td>{r.mem}</td>
                      <td>{r.disk}</td>
                      <td>{t?.spec?.role || "*"}</td>
                      <td>{owner ? `${String(owner.kind ?? "").toLowerCase()}/${owner.name}` : ""}</td>
                      <td>{age(t?.metadata?.creationTimestamp, now)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {volumes && (
        <section aria-labelledby="volumes-title">
          <h2 id="volumes-title">
            Volumes <span class="muted">{volumeSnap.loaded ? onNodeVolumes.length : "…"}</span>
          </h2>
          {volumeSnap.loaded && onNodeVolumes.length === 0 ? (
            <p class="muted empty">No volumes on this node.</p>
          ) : (
            <div class="table-wrap">
              <table class="objects compact" id="node-volumes">
                <Head columns={["NAMESPACE", "NAME", "SIZE(MiB)", "PHASE", "AGE"]} />
                <tbody>
                  {onNodeVolumes.map((v) => {
                    const ns = String(v?.metadata?.namespace ?? "");
                    const vn = String(v?.metadata?.name ?? "");
                    return (
                      <tr data-key={`${ns}/${vn}`}>
                        <td>{ns}</td>
                        <td>
                          <a href={objectHref("volumes", ns, vn)}>{vn}</a>
                        </td>
                        <td>{Number(v?.spec?.size ?? 0)}</td>
                        <td>{v?.status?.phase ?? "Pending"}</td>
                        <td>{age(v?.metadata?.creationTimestamp, now)}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
        </section>
      )}
      <details class="embedded" id="object">
        <summary>The node as YAML; edit, delete</summary>
        <ObjectPage slug="nodes" name={name} />
      </details>
    </section>
  );
}

/** The served core kinds the node pages watch (volumes may be missing). */
function useNodeKinds(): { error?: string; nodes?: Kind; tasks?: Kind; volumes?: Kind } | null {
  const ks = useKinds();
  if (ks.state === "loading") return null;
  if (ks.state === "error") return { error: ks.message };
  const find = (plural: string) => ks.value.find((k) => k.group === CORE_GROUP && k.plural === plural);
  const [nodes, tasks, volumes] = [find("nodes"), find("tasks"), find("volumes")];
  if (!nodes || !tasks) return { error: "The server serves no nodes or tasks." };
  return { nodes, tasks, volumes };
}

/** A node with its capacity, what its tasks and volumes hold, and those, live. */
export function NodePage(props: { name: string }) {
  const k = useNodeKinds();
  if (!k) return <p class="loading">Loading…</p>;
  if (k.error || !k.nodes || !k.tasks) return <p class="error" role="alert">{k.error}</p>;
  return <NodeOf nodes={k.nodes} tasks={k.tasks} volumes={k.volumes} name={props.name} />;
}

/** A resource of a node in a list cell: allocated of capacity, and a meter. */
function Cell(props: { name: string; used: number; capacity: number; fmt: (n: number) => string }) {
  return (
    <td class="usage-cell" data-resource={props.name} data-allocated={String(props.used)} data-capacity={String(props.capacity)}>
      {props.fmt(props.used)} / {props.fmt(props.capacity)}
      <br />
      <ShareMeter used={props.used} capacity={props.capacity} label={`${props.name} allocated`} />
    </td>
  );
}

function NodesOf(props: { nodes: Kind; tasks: Kind; volumes?: Kind }) {
  const nodeSnap = useLive(props.nodes, {});
  const taskSnap = useLive(props.tasks, {});
  const volumeSnap = useLive(props.volumes, {});
  const now = useNow();
  const tasksOn = byNode(taskSnap.items.values());
  const volumesOn = byNode(volumeSnap.items.values());
  const [q, setQ] = useState("");
  const rows = [...nodeSnap.items.values()].filter((o) => matchesName(o, q)).sort(byKey);
  const linked = together(props.volumes ? [nodeSnap, taskSnap, volumeSnap] : [nodeSnap, taskSnap]);
  return (
    <section class="nodes-list">
      <ListHead kind={props.nodes} snap={{ ...nodeSnap, ...linked }} search={[q, setQ]} />
      <p class="muted">
        Allocated: what the node's tasks that have not ended asked for, and the disk of the volumes bound to it.
      </p>
      <div class="table-wrap">
        <table class="objects" id="nodes" data-kind="nodes">
          <Head columns={["NAME", "STATUS", "ADDRESS", "ATTRIBUTES", "RESERVATIONS", "CPUS", "MEM(MiB)", "DISK(MiB)", "PORTS", "TASKS", "AGE"]} />
          <tbody>
            {rows.map((n) => {
              const name = String(n?.metadata?.name ?? "");
              const tasks = tasksOn.get(name) ?? [];
              const { total } = allocated(tasks, volumesOn.get(name) ?? []);
              const capacity = resourcesOf(n?.status?.capacity);
              const phase = String(n?.status?.phase ?? "Pending");
              const unschedulable = n?.spec?.unschedulable === true;
              const attributes = Object.entries((n?.spec?.attributes ?? {}) as Record<string, string>);
              const reservations = Object.entries((n?.spec?.reservations ?? {}) as Record<string, any>);
              return (
                <tr data-key={`/${name}`} data-phase={phase} data-unschedulable={String(unschedulable)}>
                  <td>
                    <a href={objectHref("nodes", undefined, name)}>{name}</a>
                  </td>
                  <td title={n?.status?.message}>
                    <span class={`phase phase-${phase.toLowerCase()}`}>{phase}</span>
                    {unschedulable && <strong class="warn">, Unschedulable</strong>}
                  </td>
                  <td>{n?.status?.address ?? "<none>"}</td>
                  <td>{attributes.length === 0 ? <span class="muted">&lt;none&gt;</span> : attributes.map(([k, v]) => `${k}=${v}`).join(", ")}</td>
                  <td>
                    {reservations.length === 0 ? (
                      <span class="muted">&lt;none&gt;</span>
                    ) : (
                      reservations
                        .map(([role, r]) => {
                          const x = resourcesOf(r);
                          return `${role}: ${cores(x.cpus)} cpus, ${x.mem} MiB`;
                        })
                        .join("; ")
                    )}
                  </td>
                  <Cell name="cpus" used={total.cpus} capacity={capacity.cpus} fmt={cores} />
                  <Cell name="mem" used={total.mem} capacity={capacity.mem} fmt={String} />
                  <Cell name="disk" used={total.disk} capacity={capacity.disk} fmt={String} />
                  <td data-resource="ports">
                    {hostPorts(tasks).length} / {portCount(n?.status?.portRanges)}
                  </td>
                  <td data-tasks={String(tasks.filter(holds).length)}>{tasks.filter(holds).length}</td>
                  <td>{age(n?.metadata?.creationTimestamp, now)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {nodeSnap.loaded && rows.length === 0 && (
        <p class="muted empty">No nodes: start an agent (<code>corral agent --server URL</code>) to register one.</p>
      )}
    </section>
  );
}

/** The nodes (`/ui/k/nodes`), live, each with capacity against what is allocated on it. */
export function NodesPage() {
  const k = useNodeKinds();
  if (!k) return <p class="loading">Loading…</p>;
  if (k.error || !k.nodes || !k.tasks) return <p class="error" role="alert">{k.error}</p>;
  return <NodesOf nodes={k.nodes} tasks={k.tasks} volumes={k.volumes} />;
}
