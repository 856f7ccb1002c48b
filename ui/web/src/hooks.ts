// Hooks tying pages to the server: a kind from a link, a live collection, an access
// review, and a clock for ages.

import { useEffect, useState } from "preact/hooks";

import { can, type Kind, kindBySlug, kinds } from "./api";
import { type Scope, type Snapshot, watchCollection } from "./watch";

/** Something loading, loaded, or failed with a message. */
export type Loaded<T> = { state: "loading" } | { state: "ok"; value: T } | { state: "error"; message: string };

/** The kind a link names; `ok` with `undefined` when the server serves no such kind. */
export function useKind(slug: string): Loaded<Kind | undefined> {
  const [k, setK] = useState<Loaded<Kind | undefined>>({ state: "loading" });
  useEffect(() => {
    let live = true;
    setK({ state: "loading" });
    kindBySlug(slug).then(
      (value) => live && setK({ state: "ok", value }),
      (e) => live && setK({ state: "error", message: String(e?.message ?? e) }),
    );
    return () => {
      live = false;
    };
  }, [slug]);
  return k;
}

/** Every served kind. */
export function useKinds(): Loaded<Kind[]> {
  const [ks, setKs] = useState<Loaded<Kind[]>>({ state: "loading" });
  useEffect(() => {
    let live = true;
    kinds(true).then(
      (value) => live && setKs({ state: "ok", value }),
      (e) => live && setKs({ state: "error", message: String(e?.message ?? e) }),
    );
    return () => {
      live = false;
    };
  }, []);
  return ks;
}

const EMPTY: Snapshot = { items: new Map(), link: "connecting", loaded: false };

/** The objects of `kind` in `scope`, kept live from the watch API (`null` kind: nothing). */
export function useLive(kind: Kind | null | undefined, scope: Scope): Snapshot {
  const [snap, setSnap] = useState<Snapshot>(EMPTY);
  const { namespace, fieldSelector, labelSelector } = scope;
  useEffect(() => {
    setSnap(EMPTY);
    if (!kind) return undefined;
    return watchCollection(kind, { namespace, fieldSelector, labelSelector }, setSnap);
  }, [kind, namespace, fieldSelector, labelSelector]);
  return snap;
}

/** Whether the user may `verb` (`undefined` until the server answered). */
export function useCan(
  verb: string,
  kind: Kind | null | undefined,
  namespace?: string,
  name?: string,
  subresource?: string,
): boolean | undefined {
  const [ok, setOk] = useState<boolean | undefined>(undefined);
  useEffect(() => {
    let live = true;
    setOk(undefined);
    if (kind) void can(verb, kind, namespace, name, subresource).then((a) => live && setOk(a));
    return () => {
      live = false;
    };
  }, [verb, kind, namespace, name, subresource]);
  return ok;
}

/** Now, in milliseconds, advancing every `everyMs` (so that ages move). */
export function useNow(everyMs = 5000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}
