// Live collections: list, then watch from the list's resourceVersion. The watches of
// a tab share one request (`./mux`), read with fetch and a ReadableStream
// (EventSource cannot send the bearer token), one JSON line an event. A broken
// connection is shown and resumed from the last resourceVersion seen, so no change is
// lost; a resourceVersion the server no longer holds (410 Gone) means listing again.

import { ApiError, collectionPath, getJson, type Kind } from "./api";
import { mux, type Sub } from "./mux";

/** How the page's view of the server stands. */
export type Link = "connecting" | "live" | "reconnecting";

/** What a live collection holds at one moment. */
export interface Snapshot {
  /** Objects by `namespace/name`. */
  items: Map<string, any>;
  link: Link;
  /** Why the link is down, in the server's words when it gave some. */
  error?: string;
  /** Whether the first list has arrived. */
  loaded: boolean;
}

/** What to watch besides the kind. */
export interface Scope {
  namespace?: string;
  /** A field selector, e.g. `metadata.name=web`. */
  fieldSelector?: string;
  labelSelector?: string;
}

/** The key of an object in a {@link Snapshot}. */
export function keyOf(o: any): string {
  return `${o?.metadata?.namespace ?? ""}/${o?.metadata?.name ?? ""}`;
}

/**
 * How several live collections stand together, for one status on a page: reconnecting
 * if any is, else connecting if any is, else live; and why, from the first not live.
 */
export function together(snaps: Snapshot[]): { link: Link; error?: string } {
  const down = snaps.find((x) => x.link === "reconnecting") ?? snaps.find((x) => x.link === "connecting");
  return down ? { link: down.link, error: down.error } : { link: "live" };
}

/** Objects in the order of their keys (`namespace/name`), as `corral get` lists them. */
export function byKey(a: any, b: any): number {
  return keyOf(a).localeCompare(keyOf(b));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Keeps `onChange` told of the objects of `kind` in `scope`, live, until the returned
 * function is called. The watch goes over the tab's one connection ({@link mux}).
 */
export function watchCollection(kind: Kind, scope: Scope, onChange: (s: Snapshot) => void): () => void {
  let stopped = false;
  const items = new Map<string, any>();
  let rv = "";
  let link: Link = "connecting";
  let error: string | undefined;
  let loaded = false;
  let id: string | null = null;
  let emitting = false;
  const emit = () => {
    if (!stopped) onChange({ items: new Map(items), link, error, loaded });
  };
  // Every event of a burst at once: one render per burst, not per event.
  const emitSoon = () => {
    if (emitting) return;
    emitting = true;
    setTimeout(() => {
      emitting = false;
      emit();
    }, 0);
  };
  const query = (extra: Record<string, string>) => {
    const q = new URLSearchParams(extra);
    if (scope.fieldSelector) q.set("fieldSelector", scope.fieldSelector);
    if (scope.labelSelector) q.set("labelSelector", scope.labelSelector);
    const s = q.toString();
    return `${collectionPath(kind, scope.namespace)}${s ? `?${s}` : ""}`;
  };

  const list = async () => {
    const l = await getJson(query({}));
    items.clear();
    for (const o of l.items ?? []) items.set(keyOf(o), o);
    rv = String(l.metadata?.resourceVersion ?? "");
    loaded = true;
  };

  // One event; a watch ERROR becomes an exception, as if the request had failed.
  const apply = (ev: any) => {
    const o = ev?.object;
    switch (ev?.type) {
      case "ADDED":
      case "MODIFIED":
        items.set(keyOf(o), o);
        break;
      case "DELETED":
        items.delete(keyOf(o));
        break;
      case "BOOKMARK":
        break;
      case "ERROR":
        throw new ApiError(Number(o?.code ?? 500), String(o?.message ?? "the watch failed"), String(o?.reason ?? ""));
      default:
        return;
    }
    const next = o?.metadata?.resourceVersion;
    if (next) rv = String(next);
  };

  const down = (why: string) => {
    link = "reconnecting";
    error = why;
    emit();
  };

  // Lists (again), then watches from the list's resourceVersion; a list that fails
  // is tried again, waiting longer each time.
  const start = async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        await list();
        break;
      } catch (e) {
        if (stopped) return;
        down(e instanceof Error ? e.message : String(e));
        await sleep(Math.min(500 * 2 ** attempt, 8000));
      }
    }
    if (stopped) return;
    emit();
    if (id === null) id = mux.add(sub);
    else mux.schedule();
  };

  // The watch ended: after a 410 (the revision is compacted) the list is the new
  // starting point; otherwise it goes on from the last resourceVersion seen.
  const ended = (status: any) => {
    if (stopped) return;
    if (Number(status?.code) === 410) {
      void start();
      return;
    }
    if (status) down(String(status?.message ?? "the watch was refused"));
    setTimeout(() => !stopped && mux.schedule(), status ? 2000 : 0);
  };

  const sub: Sub = {
    path: () => query({ watch: "true", allowWatchBookmarks: "true", resourceVersion: rv }),
    onOpen: () => {
      link = "live";
      error = undefined;
      emit();
    },
    onEvent: (ev) => {
      try {
        apply(ev);
        emitSoon();
      } catch (e) {
        ended(e instanceof ApiError ? { code: e.code, message: e.message } : { message: String(e) });
      }
    },
    onEnd: ended,
    onBroken: down,
  };

  emit();
  void start();
  return () => {
    stopped = true;
    if (id !== null) mux.remove(id);
  };
}
