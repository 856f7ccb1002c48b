// Cells of a kind's columns, as `corral get` shows them: the value at the column's
// JSONPath (`.status.phase`, `.spec.ports[0]`), dates as ages, counts of maps and
// lists, references as `kind/name`, `<none>` for nothing.

import type { Column } from "./api";

/** `.a.b[0].c` → `["a", "b", "0", "c"]`; `null` when the path is not of that simple form. */
export function pathSegments(jsonPath: string): string[] | null {
  if (!jsonPath.startsWith(".")) return null;
  const out: string[] = [];
  for (const seg of jsonPath.slice(1).split(".")) {
    const m = /^([A-Za-z0-9_-]+)((?:\[\d+\])*)$/.exec(seg);
    if (!m) return null;
    out.push(m[1]!);
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) out.push(idx[1]!);
  }
  return out;
}

/** The value at `jsonPath` in `obj`, if there is one. */
export function valueAt(obj: unknown, jsonPath: string): unknown {
  const segs = pathSegments(jsonPath);
  if (!segs) return undefined;
  let v: any = obj;
  for (const s of segs) {
    if (v === null || typeof v !== "object") return undefined;
    v = v[s];
  }
  return v;
}

/** Seconds as people read ages: `45s`, `3m20s`, `10m`, `4h1m`, `30h`, `3d1h`, `100d`. */
export function humanDuration(secs: number): string {
  if (secs < -1) return "<invalid>";
  const s = Math.max(0, Math.floor(secs));
  const m = Math.floor(s / 60);
  const h = Math.floor(s / 3600);
  const d = Math.floor(s / 86400);
  const both = (big: number, unit: string, small: number, sunit: string) =>
    small === 0 ? `${big}${unit}` : `${big}${unit}${small}${sunit}`;
  if (s < 120) return `${s}s`;
  if (m < 10) return both(m, "m", s % 60, "s");
  if (h < 3) return `${m}m`;
  if (h < 8) return both(h, "h", m % 60, "m");
  if (h < 48) return `${h}h`;
  if (d < 8) return both(d, "d", h % 24, "h");
  if (d < 365 * 2) return `${d}d`;
  if (d < 365 * 8) return both(Math.floor(d / 365), "y", d % 365, "d");
  return `${Math.floor(d / 365)}y`;
}

/** Time since an RFC 3339 timestamp, or `<unknown>`. */
export function age(timestamp: unknown, nowMs: number = Date.now()): string {
  if (typeof timestamp !== "string") return "<unknown>";
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? "<unknown>" : humanDuration((nowMs - t) / 1000);
}

/** The cell of column `c` for `obj`. */
export function cell(c: Column, obj: unknown, nowMs: number = Date.now()): string {
  const v = valueAt(obj, c.jsonPath);
  switch (c.type) {
    case "count":
      if (Array.isArray(v)) return String(v.length);
      if (v && typeof v === "object") return String(Object.keys(v).length);
      return "0";
    case "reference": {
      const r = (v ?? {}) as { kind?: string; name?: string };
      return `${(r.kind ?? "").toLowerCase()}/${r.name ?? ""}`;
    }
    case "date":
      if (typeof v === "string") return age(v, nowMs);
      break;
  }
  if (v === undefined || v === null) return "<none>";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** The columns shown by default (priority 0), as `corral get` without `-o wide`. */
export function defaultColumns(columns: Column[] | undefined): Column[] {
  return (columns ?? []).filter((c) => !c.priority);
}
