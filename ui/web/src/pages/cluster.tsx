// The dashboard's resources: across the cluster, what the nodes have (their
// `status.capacity` and port ranges) against what tasks that have not ended hold (their
// resources and host ports) and bound volumes hold (their size, as disk), drawn as bars
// in an inline SVG chart; and by role, what the nodes reserve for it against what its
// tasks hold. Counted in the page from the dashboard's watches of nodes, tasks and
// volumes, as a node's page counts one node.

import "./style.css";

import { allocated, cores, hostPorts, plus, portCount, type Resources, resourcesOf, ZERO } from "../resources";
import type { Snapshot } from "../watch";
import { Head, ShareMeter } from "../widgets";

/** One resource: what there is of it, what is allocated, and how to write an amount. */
export interface Row {
  name: string;
  unit: string;
  capacity: number;
  used: number;
  fmt: (n: number) => string;
}

const BAR_W = 320;
const BAR_H = 18;
const LABEL_W = 64;
const GAP = 10;

/** Allocated against capacity, one bar per resource, as an SVG chart. */
function Chart(props: { rows: Row[]; id: string; label: string }) {
  const height = props.rows.length * (BAR_H + GAP);
  const width = LABEL_W + BAR_W + 150;
  return (
    <svg
      id={props.id}
      class="resource-chart"
      role="img"
      aria-label={props.label}
      viewBox={`0 0 ${width} ${height}`}
      width={width}
      height={height}
    >
      {props.rows.map((r, i) => {
        const share = r.capacity > 0 ? Math.min(1, r.used / r.capacity) : 0;
        const y = i * (BAR_H + GAP);
        return (
          <g data-resource={r.name} data-share={String(share)}>
            <text x={0} y={y + BAR_H - 4} class="chart-label">
              {r.name}
            </text>
            <rect x={LABEL_W} y={y} width={BAR_W} height={BAR_H} rx={3} class="chart-free" />
            <rect x={LABEL_W} y={y} width={Math.round(BAR_W * share)} height={BAR_H} rx={3} class="chart-used" />
            <text x={LABEL_W + BAR_W + 8} y={y + BAR_H - 4} class="chart-value">
              {r.fmt(r.used)} / {r.fmt(r.capacity)} {r.unit}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/**
 * Resources as a table: capacity, allocated and free a row, and with `share` a meter
 * of the allocated share. The dashboard's and a node's page's.
 */
export function UsageTable(props: { rows: Row[]; id: string; share?: boolean; class?: string }) {
  const columns = ["RESOURCE", "CAPACITY", "ALLOCATED", "FREE", props.share === true && "SHARE"];
  return (
    <table class={`objects usage ${props.class ?? ""}`} id={props.id}>
      <Head columns={columns} />
      <tbody>
        {props.rows.map((r) => (
          <tr data-resource={r.name}>
            <th scope="row">
              {r.name}
              {r.unit && <span class="muted"> ({r.unit})</span>}
            </th>
            <td class="num" data-capacity>
              {r.fmt(r.capacity)}
            </td>
            <td class="num" data-allocated>
              {r.fmt(r.used)}
            </td>
            <td class="num" data-free>
              {r.fmt(Math.max(0, r.capacity - r.used))}
            </td>
            {props.share && (
              <td class="bar-cell">
                <ShareMeter used={r.used} capacity={r.capacity} label={`${r.name} allocated`} />
              </td>
            )}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The cluster's resources, allocated against free, in all and by role. */
export function ClusterResources(props: { nodes: Snapshot; tasks: Snapshot; volumes?: Snapshot }) {
  const nodes = [...props.nodes.items.values()];
  const tasks = [...props.tasks.items.values()];
  let capacity: Resources = { ...ZERO };
  let ports = 0;
  const reserved = new Map<string, Resources>();
  for (const n of nodes) {
    capacity = plus(capacity, resourcesOf(n?.status?.capacity));
    ports += portCount(n?.status?.portRanges);
    for (const [role, r] of Object.entries((n?.spec?.reservations ?? {}) as Record<string, any>)) {
      reserved.set(role, plus(reserved.get(role) ?? ZERO, resourcesOf(r)));
    }
  }
  const volumes = [...(props.volumes?.items.values() ?? [])];
  const { total, byRole } = allocated(tasks, volumes);
  const portsUsed = hostPorts(tasks).length;
  const rows: Row[] = [
    { name: "cpus", unit: "cores", capacity: capacity.cpus, used: total.cpus, fmt: cores },
    { name: "mem", unit: "MiB", capacity: capacity.mem, used: total.mem, fmt: String },
    { name: "disk", unit: "MiB", capacity: capacity.disk, used: total.disk, fmt: String },
    { name: "ports", unit: "", capacity: ports, used: portsUsed, fmt: String },
  ];
  const roles = [...new Set([...reserved.keys(), ...byRole.keys()])].sort();
  const loaded = props.nodes.loaded && props.tasks.loaded && (props.volumes?.loaded ?? true);
  return (
    <section class="card wide" id="resources" aria-labelledby="resources-title" data-loaded={String(loaded)}>
      <h2 id="resources-title">Resources</h2>
      <p class="muted">
        Allocated: what tasks that have not ended asked for and the disk of bound volumes, against what the nodes
        ({nodes.length}) have.
      </p>
      <Chart id="resource-chart" rows={rows} label="Allocated against capacity across the cluster" />
      <div class="table-wrap">
        <UsageTable id="cluster-resources" rows={rows} class="compact" />
      </div>
      <h3>By role</h3>
      {roles.length === 0 ? (
        <p class="muted">No role holds or reserves anything.</p>
      ) : (
        <div class="table-wrap">
          <table class="objects compact" id="roles">
            <Head columns={["ROLE", "RESERVED", "ALLOCATED", "CPUS OF CLUSTER"]} />
            <tbody>
              {roles.map((role) => {
                const res = reserved.get(role);
                const used = byRole.get(role) ?? ZERO;
                return (
                  <tr data-role={role} data-cpus={String(used.cpus)}>
                    <td>{role}</td>
                    <td>{res ? `${cores(res.cpus)} cpus, ${res.mem} MiB, ${res.disk} MiB disk` : "—"}</td>
                    <td>
                      {cores(used.cpus)} cpus, {used.mem} MiB, {used.disk} MiB disk
                    </td>
                    <td>
                      <ShareMeter used={used.cpus} capacity={capacity.cpus} label={`${role} holds, of the cluster's cpus,`} />
                    </td>
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
