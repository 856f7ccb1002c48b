// Live collections: list, then watch from the list's resourceVersion. The watch is
// read with fetch and a ReadableStream (EventSource cannot send the bearer token),
// one JSON event a line. A broken connection is shown and resumed from the last
// resourceVersion seen, so no change is lost; a resourceVersion the server no longer
// holds (410 Gone) means listing again.

import { ApiError, collectionPath, getJson, type Kind, request } from "./api";

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Keeps `onChange` told of the objects of `kind` in `scope`, live, until the returned
 * function is called.
 */
export function watchCollection(kind: Kind, scope: Scope, onChange: (s: Snapshot) => void): () => void {
  let stopped = false;
  let ctrl: AbortController | null = null;
  const items = new Map<string, any>();
  let rv = "";
  let link: Link = "connecting";
  let error: string | undefined;
  let loaded = false;
  const emit = () => {
    if (!stopped) onChange({ items: new Map(items), link, error, loaded });
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

  const run = async () => {
    let attempt = 0;
    let mustList = true;
    while (!stopped) {
      try {
        if (mustList) {
          await list();
          mustList = false;
        }
        ctrl = new AbortController();
        const resp = await request(query({ watch: "true", allowWatchBookmarks: "true", resourceVersion: rv }), {
          signal: ctrl.signal,
          headers: { Accept: "application/x-ndjson" },
        });
        link = "live";
        error = undefined;
        attempt = 0;
        emit();
        const reader = resp.body!.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let changed = false;
          for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (line) {
              apply(JSON.parse(line));
              changed = true;
            }
          }
          // Every event of a chunk at once: one render per burst.
          if (changed) emit();
        }
        // The server ended the stream (it is stopping, say): resume.
        error = "the server closed the watch";
      } catch (e) {
        if (stopped) return;
        if (e instanceof ApiError && e.code === 410) {
          // Fell behind compaction: the list is the new starting point.
          mustList = true;
          continue;
        }
        error = e instanceof Error ? e.message : String(e);
      }
      if (stopped) return;
      link = "reconnecting";
      emit();
      await sleep(Math.min(500 * 2 ** attempt, 8000));
      attempt += 1;
    }
  };
  emit();
  void run();
  return () => {
    stopped = true;
    ctrl?.abort();
  };
}
