// The API as the interface uses it: the bearer token, requests, the server's
// errors (a Kubernetes-style `Status`), discovery of kinds and access reviews.

/** Where the token is kept: this tab's session storage, forgotten when the tab closes. */
const TOKEN_KEY = "corral.token";

/** The token this tab logged in with, if any. */
export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps `t` for this tab (or forgets it), and forgets what was learnt with the old one. */
export function setToken(t: string | null): void {
  if (t === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, t);
  reviews.clear();
  kindsCache = null;
}

/** One field the server found wrong (`Status.details.causes`). */
export interface Cause {
  field?: string;
  message?: string;
  reason?: string;
}

/** A refused or failed request, with the server's own words. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason: string = "",
    readonly causes: Cause[] = [],
  ) {
    super(message);
  }
}

/** Called when the server no longer accepts the token (401). */
let onUnauthorized: (() => void) | null = null;

/** Sets what to do when the token stops working. */
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

async function errorOf(resp: Response): Promise<ApiError> {
  const text = await resp.text().catch(() => "");
  try {
    const s = JSON.parse(text);
    if (s && s.kind === "Status") {
      return new ApiError(resp.status, String(s.message ?? text), String(s.reason ?? ""), s.details?.causes ?? []);
    }
  } catch {
    // Not JSON: the text itself is the message.
  }
  return new ApiError(resp.status, text.trim() || `${resp.status} ${resp.statusText}`);
}

/** `fetch` with the token; a non-2xx answer becomes an {@link ApiError}. */
export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const t = token();
  if (t) headers.set("Authorization", `Bearer ${t}`);
  if (!headers.has("Accept")) headers.set("Accept", "application/json");
  const resp = await fetch(path, { ...init, headers, cache: "no-store", credentials: "omit" });
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && onUnauthorized) onUnauthorized();
    throw err;
  }
  return resp;
}

/** GETs `path` as JSON. */
export async function getJson<T = any>(path: string): Promise<T> {
  return (await request(path)).json();
}

/** Sends `body` as JSON with `method`; answers the server's JSON. */
export async function sendJson<T = any>(method: string, path: string, body: unknown): Promise<T> {
  const resp = await request(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return resp.json();
}

/** A column of `corral get` for a kind. */
export interface Column {
  name: string;
  jsonPath: string;
  type?: string;
  description?: string;
  priority?: number;
}

/** A served kind, as `GET /kinds` lists them (custom kinds included). */
export interface Kind {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames?: string[];
  namespaced: boolean;
  columns?: Column[];
  subresources?: { status?: boolean; log?: boolean; scale?: unknown };
}

/** The group of Corral's built-in kinds: their links name the plural alone. */
export const CORE_GROUP = "corral.dev";

let kindsCache: Promise<Kind[]> | null = null;

/** Every served kind; `refresh` asks again (a custom kind may have just been defined). */
export function kinds(refresh = false): Promise<Kind[]> {
  if (refresh || !kindsCache) {
    // Schemas are large and not shown here: dropped at once.
    kindsCache = getJson<any[]>("/kinds").then((ks) =>
      ks.map((k) => {
        const { schema, ...rest } = k;
        void schema;
        return rest as Kind;
      }),
    );
    kindsCache.catch(() => {
      kindsCache = null;
    });
  }
  return kindsCache;
}

/** How a kind is named in the interface's links: `configmaps`, or `widgets.example.com`. */
export function kindSlug(k: Kind): string {
  return k.group === CORE_GROUP ? k.plural : `${k.plural}.${k.group}`;
}

/** The kind a link names (see {@link kindSlug}); asks the server again once if unknown. */
export async function kindBySlug(slug: string): Promise<Kind | undefined> {
  const find = (ks: Kind[]) =>
    ks.find((k) => kindSlug(k) === slug) ??
    ks.find((k) => k.plural === slug || k.kind.toLowerCase() === slug || (k.shortNames ?? []).includes(slug));
  return find(await kinds()) ?? find(await kinds(true));
}

const enc = encodeURIComponent;

/** The API path of a kind's objects, in `namespace` or everywhere. */
export function collectionPath(k: Kind, namespace?: string): string {
  const base = `/apis/${k.group}/${k.version}`;
  return k.namespaced && namespace ? `${base}/namespaces/${enc(namespace)}/${k.plural}` : `${base}/${k.plural}`;
}

/** The API path of one object. */
export function objectPath(k: Kind, namespace: string | undefined, name: string): string {
  return `${collectionPath(k, k.namespaced ? namespace : undefined)}/${enc(name)}`;
}

/** Who the token is. */
export interface Me {
  username: string;
  groups: string[];
}

/** Asks the server who the token is (`SelfSubjectReview`); fails with 401 on a bad token. */
export async function whoami(): Promise<Me> {
  const review = await sendJson("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
    apiVersion: "authentication.k8s.io/v1",
    kind: "SelfSubjectReview",
  });
  const info = review?.status?.userInfo ?? {};
  return { username: String(info.username ?? ""), groups: info.groups ?? [] };
}

const reviews = new Map<string, Promise<boolean>>();

/**
 * Whether the user may `verb` objects of `k` (in `namespace`, named `name`): the
 * server's RBAC answers (`SelfSubjectAccessReview`). Actions it refuses are not
 * offered. Answers are kept until the token changes; an error counts as no.
 */
export function can(verb: string, k: Kind, namespace?: string, name?: string, subresource?: string): Promise<boolean> {
  const key = [verb, k.group, k.plural, namespace ?? "", name ?? "", subresource ?? ""].join("\u0000");
  let answer = reviews.get(key);
  if (!answer) {
    answer = sendJson("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: {
        resourceAttributes: {
          verb,
          group: k.group,
          resource: k.plural,
          ...(k.namespaced && namespace ? { namespace } : {}),
          ...(name ? { name } : {}),
          ...(subresource ? { subresource } : {}),
        },
      },
    })
      .then((r) => r?.status?.allowed === true)
      .catch(() => false);
    reviews.set(key, answer);
  }
  return answer;
}
