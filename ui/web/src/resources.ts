// What tasks and volumes hold, counted as the server's node ledger counts it: the
// resources of every task bound to a node (`spec.nodeName`) that has not ended, and the
// size of every volume bound to a node, as disk of the role `*`, until the volume is
// gone (whether or not a task uses it). Shared by the nodes list, a node's page and
// the dashboard.

/** Task phases that are an end: such a task holds nothing. */
const ENDED = new Set(["FINISHED", "FAILED", "KILLED", "LOST"]);

/** Scalar resources as nodes and tasks state them: cores, MiB, MiB. */
export interface Resources {
  cpus: number;
  mem: number;
  disk: number;
}

export const ZERO: Resources = { cpus: 0, mem: 0, disk: 0 };

/** The scalar resources of a `resources`-like object (missing ones are 0). */
export function resourcesOf(r: any): Resources {
  return { cpus: Number(r?.cpus ?? 0) || 0, mem: Number(r?.mem ?? 0) || 0, disk: Number(r?.disk ?? 0) || 0 };
}

/** `a + b`, each resource. */
export function plus(a: Resources, b: Resources): Resources {
  return { cpus: a.cpus + b.cpus, mem: a.mem + b.mem, disk: a.disk + b.disk };
}

/** Whether a task still holds what it asked for (bound, not ended). */
export function holds(task: any): boolean {
  return Boolean(task?.spec?.nodeName) && !ENDED.has(String(task?.status?.phase ?? ""));
}

/** The role a volume's disk is counted for: volumes belong to no role. */
export const VOLUME_ROLE = "*";

/** Whether a volume holds its size on a node: once it names one. */
export function volumeHolds(volume: any): boolean {
  return Boolean(volume?.spec?.nodeName);
}

/** What `tasks` and bound `volumes` hold in all, and by role (`*` when none is named). */
export function allocated(tasks: any[], volumes: any[] = []): { total: Resources; byRole: Map<string, Resources> } {
  let total = { ...ZERO };
  const byRole = new Map<string, Resources>();
  const add = (role: string, r: Resources) => {
    total = plus(total, r);
    byRole.set(role, plus(byRole.get(role) ?? ZERO, r));
  };
  for (const t of tasks) {
    if (holds(t)) add(String(t?.spec?.role || "*"), resourcesOf(t?.spec?.resources));
  }
  for (const v of volumes) {
    if (volumeHolds(v)) add(VOLUME_ROLE, { cpus: 0, mem: 0, disk: Number(v?.spec?.size ?? 0) || 0 });
  }
  return { total, byRole };
}

/** `items` grouped by the node they are bound to (`spec.nodeName`). */
export function byNode(items: Iterable<any>): Map<string, any[]> {
  const m = new Map<string, any[]>();
  for (const o of items) {
    const n = o?.spec?.nodeName;
    if (!n) continue;
    const l = m.get(String(n));
    if (l) l.push(o);
    else m.set(String(n), [o]);
  }
  return m;
}

/** The host ports `tasks` hold (those that have not ended). */
export function hostPorts(tasks: any[]): number[] {
  return tasks
    .filter(holds)
    .flatMap((t) => (t?.spec?.ports ?? []).map((p: any) => p?.hostPort).filter((p: unknown) => typeof p === "number"));
}

/** How many ports a node's `status.portRanges` offer (`begin` to `end`, both in). */
export function portCount(ranges: any): number {
  let n = 0;
  for (const r of Array.isArray(ranges) ? ranges : []) {
    const b = Number(r?.begin);
    const e = Number(r?.end);
    if (Number.isFinite(b) && Number.isFinite(e) && e >= b) n += e - b + 1;
  }
  return n;
}

/** Cores with at most three decimals, as they are written (`0.1`, not `0.10000000000000001`). */
export function cores(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}
