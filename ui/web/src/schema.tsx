// Help beside the YAML editor: the fields of the kind, from the JSON Schema the server
// validates against (`GET /schemas/GROUP/VERSION/PLURAL`, custom kinds included), as
// `corral explain` shows them; and where in the text a field the server refused is.

import { useEffect, useState } from "preact/hooks";
import { isMap, isPair, isScalar, isSeq, parseDocument } from "yaml";

import { getJson, type Kind } from "./api";

const schemas = new Map<string, Promise<any>>();

/** The kind's schema (`undefined` until it arrives, or when it cannot be read). */
export function useSchema(kind: Kind | undefined): any {
  const [schema, setSchema] = useState<any>(undefined);
  useEffect(() => {
    if (!kind) return undefined;
    const key = `${kind.group}/${kind.version}/${kind.plural}`;
    let p = schemas.get(key);
    if (!p) {
      p = getJson(`/schemas/${key}`);
      p.catch(() => schemas.delete(key));
      schemas.set(key, p);
    }
    let live = true;
    p.then(
      (s) => live && setSchema(s),
      () => live && setSchema(undefined),
    );
    return () => {
      live = false;
    };
  }, [kind]);
  return schema;
}

/** The one schema of an `Option` (`anyOf` / `oneOf` with `null`), else the schema. */
function unwrap(s: any): any {
  const alts = s?.anyOf ?? s?.oneOf;
  if (Array.isArray(alts)) {
    const real = alts.filter((a: any) => a?.type !== "null");
    if (real.length === 1) return { ...real[0], description: s.description ?? real[0].description };
  }
  return s;
}

/** A field's type in `corral explain`'s words: `string`, `[]object`, `map[string]string`. */
function typeOf(raw: any): string {
  const s = unwrap(raw);
  const t = Array.isArray(s?.type) ? s.type.filter((x: string) => x !== "null")[0] : s?.type;
  if (t === "array") return `[]${typeOf(s.items ?? {})}`;
  if (t === "object" && !s.properties && s.additionalProperties && typeof s.additionalProperties === "object") {
    return `map[string]${typeOf(s.additionalProperties)}`;
  }
  return t ?? (s?.enum ? "string" : "any");
}

/** The object schema holding sub-fields: the schema's, or its array items'. */
function fieldsOf(raw: any): [Record<string, any>, string[]] | null {
  let s = unwrap(raw);
  while (s && (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) && s.items) s = unwrap(s.items);
  if (!s?.properties) return null;
  return [s.properties, Array.isArray(s.required) ? s.required : []];
}

function Field(props: { name: string; path: string; schema: any; required: boolean; open: boolean }) {
  const s = unwrap(props.schema);
  const sub = fieldsOf(s);
  const summary = (
    <>
      <code>{props.name}</code> <span class="muted">&lt;{typeOf(s)}&gt;</span>
      {props.required && <strong class="req"> required</strong>}
    </>
  );
  const body = (
    <>
      {s?.description && <p>{String(s.description)}</p>}
      {Array.isArray(s?.enum) && (
        <p class="muted">
          One of: {s.enum.map((v: unknown) => <code>{String(v)}</code>).reduce((a: any, b: any) => [a, ", ", b])}
        </p>
      )}
    </>
  );
  if (!sub) {
    return (
      <div class="field" data-path={props.path}>
        {summary}
        {body}
      </div>
    );
  }
  return (
    <details class="field" data-path={props.path} open={props.open}>
      <summary>{summary}</summary>
      {body}
      <Fields fields={sub[0]} required={sub[1]} prefix={props.path} />
    </details>
  );
}

function Fields(props: { fields: Record<string, any>; required: string[]; prefix: string; open?: (path: string) => boolean }) {
  return (
    <div class="fields-of">
      {Object.entries(props.fields)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, s]) => {
          const path = props.prefix ? `${props.prefix}.${name}` : name;
          return (
            <Field name={name} path={path} schema={s} required={props.required.includes(name)} open={props.open?.(path) ?? false} />
          );
        })}
    </div>
  );
}

/** The fields a user writes (the schema's `spec`; `status` is the controllers'). */
export function SchemaHelp(props: { kind: Kind; schema: any }) {
  const spec = props.schema?.properties?.spec;
  const sub = spec ? fieldsOf(spec) : null;
  return (
    <aside class="schema-help" id="schema-help" aria-labelledby="schema-help-title">
      <h2 id="schema-help-title">
        Fields of {props.kind.kind} <span class="muted">(as the server validates them)</span>
      </h2>
      {!props.schema ? (
        <p class="muted">Loading…</p>
      ) : !sub ? (
        <p class="muted">This kind states no fields for its spec.</p>
      ) : (
        <>
          {unwrap(spec)?.description && <p>{String(unwrap(spec).description)}</p>}
          <Fields fields={sub[0]} required={sub[1]} prefix="spec" />
        </>
      )}
    </aside>
  );
}

/** `spec.constraints[0].x` as path segments: `["spec", "constraints", 0, "x"]`. */
export function segments(field: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const part of field.split(".")) {
    const m = part.match(/^([^[\]]*)((?:\[\d+\])*)$/);
    if (!m) return out;
    if (m[1]) out.push(m[1]);
    for (const i of m[2]!.matchAll(/\[(\d+)\]/g)) out.push(Number(i[1]));
  }
  return out;
}

/**
 * Where `field` is in the YAML `text`: the characters of its value (or, for a field
 * that is missing, of the nearest field holding it that is there), and its line.
 */
export function locate(text: string, field: string): { from: number; to: number; line: number } | null {
  let doc;
  try {
    doc = parseDocument(text);
  } catch {
    return null;
  }
  if (doc.errors.length > 0) return null;
  let node: any = doc.contents;
  let keyNode: any = null;
  for (const seg of segments(field)) {
    let next: any = null;
    if (isMap(node)) {
      const pair = node.items.find((p: any) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair) {
        keyNode = pair.key;
        next = pair.value;
      }
    } else if (isSeq(node) && typeof seg === "number") {
      next = node.items[seg] ?? null;
      keyNode = null;
    }
    if (!next) break;
    node = next;
  }
  const range = node?.range ?? keyNode?.range;
  if (!range) return null;
  const from = Number(range[0]);
  const to = Number(range[1]);
  return { from, to, line: text.slice(0, from).split("\n").length };
}
