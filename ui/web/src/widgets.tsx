// Pieces several pages share: the head of a list (title, live status, Create, the
// namespace filter with the namespaces the user may list), and a share meter.

import { useEffect, useState } from "preact/hooks";

import { can, CORE_GROUP, getJson, kindBySlug, type Kind, kindSlug, collectionPath } from "./api";
import { useCan } from "./hooks";
import { listHref, navigate, newHref } from "./router";
import type { Link, Snapshot } from "./watch";

/**
 * The namespaces to offer in a filter: those the server lists, when the user may list
 * namespaces; none otherwise (the field still takes any name). Read once per page: a
 * suggestion list need not be live.
 */
function useNamespaceNames(): string[] {
  const [names, setNames] = useState<string[]>([]);
  useEffect(() => {
    let live = true;
    void (async () => {
      const ns = await kindBySlug("namespaces");
      if (!ns || ns.group !== CORE_GROUP || !(await can("list", ns))) return;
      const l = await getJson(collectionPath(ns));
      const found = ((l.items ?? []) as any[]).map((o) => String(o?.metadata?.name ?? "")).filter(Boolean);
      if (live) setNames(found.sort());
    })().catch(() => undefined);
    return () => {
      live = false;
    };
  }, []);
  return names;
}

/** Filters a list by namespace: the field suggests the namespaces there are. */
export function NamespaceFilter(props: { slug: string; namespace?: string }) {
  const [filter, setFilter] = useState(props.namespace ?? "");
  const names = useNamespaceNames();
  return (
    <form
      class="filter"
      onSubmit={(e) => {
        e.preventDefault();
        navigate(listHref(props.slug, filter.trim() || undefined));
      }}
    >
      <label for="namespace">Namespace</label>
      <input
        id="namespace"
        value={filter}
        placeholder="all namespaces"
        list="namespace-names"
        autocomplete="off"
        onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
      />
      <datalist id="namespace-names">
        {names.map((n) => (
          <option value={n} />
        ))}
      </datalist>
      <button type="submit">Show</button>
    </form>
  );
}

/**
 * The head of a list page: the kind's name, whether the list is live, Create when the
 * user may create here, the namespace filter for a namespaced kind, and why the list
 * is not live.
 */
export function ListHead(props: {
  kind: Kind;
  namespace?: string;
  snap: Snapshot;
  title?: string;
  /** The name filter's text, and where a change of it goes. */
  search?: [string, (q: string) => void];
}) {
  const { kind, namespace, snap } = props;
  const slug = kindSlug(kind);
  const mayCreate = useCan("create", kind, namespace);
  return (
    <>
      <div class="title" data-reviewed={String(mayCreate !== undefined)}>
        <h1>{props.title ?? kind.kind}</h1>
        <LinkStatus link={snap.link} error={snap.error} />
        {mayCreate && (
          <a class="button" id="create" href={newHref(slug, namespace)}>
            Create
          </a>
        )}
      </div>
      <div class="filters">
        {kind.namespaced && <NamespaceFilter slug={slug} namespace={namespace} />}
        {props.search && (
          <div class="filter search">
            <label for="search">Name</label>
            <input
              id="search"
              type="search"
              placeholder="filter by name"
              autocomplete="off"
              value={props.search[0]}
              onInput={(e) => props.search![1]((e.target as HTMLInputElement).value)}
            />
          </div>
        )}
      </div>
      {snap.error && snap.link !== "live" && (
        <p class="error" role="alert">
          {snap.error}
        </p>
      )}
    </>
  );
}

/**
 * Whether object `o` answers the name filter `q`: every word of it is in the object's
 * `namespace/name` (case aside). An empty filter keeps everything.
 */
export function matchesName(o: any, q: string): boolean {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const key = `${o?.metadata?.namespace ?? ""}/${o?.metadata?.name ?? ""}`.toLowerCase();
  return words.every((w) => key.includes(w));
}

/** `used` of `capacity` as a meter and a percentage, warning from 90%. */
export function ShareMeter(props: { used: number; capacity: number; label: string }) {
  const share = props.capacity > 0 ? Math.min(1, props.used / props.capacity) : 0;
  const pct = Math.round(share * 100);
  return (
    <span class="share" data-share={String(share)}>
      <meter min={0} max={1} value={share} high={0.9} aria-label={`${props.label} ${pct}%`} />{" "}
      <span class="muted">{pct}%</span>
    </span>
  );
}

/** How the page's link to the server stands: live, or reconnecting and why. */
export function LinkStatus(props: { link: Link; error?: string }) {
  const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" }[props.link];
  return (
    <span class={`link link-${props.link}`} role="status" aria-live="polite" data-link={props.link}>
      {text}
      {props.link === "reconnecting" && props.error ? ` (${props.error})` : ""}
    </span>
  );
}

/**
 * A table's head: a header a column; `false` leaves the column out (a namespace column
 * when one namespace is shown), `""` names it for screen readers only (row actions).
 */
export function Head(props: { columns: (string | false)[] }) {
  return (
    <thead>
      <tr>
        {props.columns
          .filter((c): c is string => c !== false)
          .map((c) => (
            <th scope="col">{c || <span class="visually-hidden">Actions</span>}</th>
          ))}
      </tr>
    </thead>
  );
}
