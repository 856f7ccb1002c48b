// Links that are real URLs: every page has its own path under /ui/, which the server
// answers with the interface, so a link can be bookmarked, shared or opened in a new
// tab. Clicks on same-origin /ui/ links change the page without reloading it.

import { useEffect, useState } from "preact/hooks";

/** Where the interface lives. */
export const BASE = "/ui";

/** A page of the interface, from its path. */
export type Route =
  | { page: "dashboard" }
  | { page: "kinds" }
  | { page: "list"; kind: string; namespace?: string }
  | { page: "new"; kind: string; namespace?: string }
  | { page: "object"; kind: string; namespace?: string; name: string }
  | { page: "notFound"; path: string };

const dec = decodeURIComponent;
const enc = encodeURIComponent;

/** The route of `location` (path and query). */
export function parse(pathname: string, search: string): Route {
  const rest = pathname.startsWith(`${BASE}/`) ? pathname.slice(BASE.length + 1) : "";
  const parts = rest.split("/").filter((p) => p !== "").map(dec);
  const namespace = new URLSearchParams(search).get("namespace") || undefined;
  if (parts.length === 0) return { page: "dashboard" };
  if (parts[0] === "k") {
    const [, kind, a, b] = parts;
    if (parts.length === 1) return { page: "kinds" };
    if (parts.length === 2) return { page: "list", kind: kind!, namespace };
    if (parts.length === 3 && a === "_new") return { page: "new", kind: kind!, namespace };
    if (parts.length === 3) return { page: "object", kind: kind!, name: a! };
    if (parts.length === 4) return { page: "object", kind: kind!, namespace: a, name: b! };
  }
  return { page: "notFound", path: pathname };
}

/** The path of a kind's list (`namespace`: only that namespace). */
export function listHref(kind: string, namespace?: string): string {
  return `${BASE}/k/${enc(kind)}${namespace ? `?namespace=${enc(namespace)}` : ""}`;
}

/** The path of one object's page. */
export function objectHref(kind: string, namespace: string | undefined, name: string): string {
  return namespace ? `${BASE}/k/${enc(kind)}/${enc(namespace)}/${enc(name)}` : `${BASE}/k/${enc(kind)}/${enc(name)}`;
}

/** The path of the page creating an object of `kind`. */
export function newHref(kind: string, namespace?: string): string {
  return `${BASE}/k/${enc(kind)}/_new${namespace ? `?namespace=${enc(namespace)}` : ""}`;
}

const listeners = new Set<() => void>();

/** Goes to `href` (a path under /ui/) without reloading. */
export function navigate(href: string, replace = false): void {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  for (const l of listeners) l();
  window.scrollTo(0, 0);
}

/** The current route, re-rendering on navigation (links, back and forward). */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname, location.search));
  useEffect(() => {
    const update = () => setRoute(parse(location.pathname, location.search));
    listeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return route;
}

/** Makes plain clicks on /ui/ links navigate in place (modified clicks open tabs as usual). */
export function interceptLinks(): void {
  document.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.("a");
    if (!a || a.target || a.hasAttribute("download")) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !(url.pathname === BASE || url.pathname.startsWith(`${BASE}/`))) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
}
