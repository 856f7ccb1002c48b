// A task's own sections on its object page: its Events, live (as `corral describe`
// selects them: `spec.involvedObject.name` and `.kind`, this incarnation's uid), and its
// log — stdout, stderr or both, followed live, narrowed to the lines holding what is
// looked for — with a Download of what the server answers without `follow` (a Blob
// the browser saves as a file).

import "./style.css";

import { useEffect, useRef, useState } from "preact/hooks";

import { CORE_GROUP, request } from "../api";
import { useKinds, useLive, useNow } from "../hooks";
import { age } from "../table";
import { Head } from "../widgets";

/** When an Event happened last. */
export function stamp(ev: any): string {
  return String(ev?.spec?.lastTimestamp ?? ev?.metadata?.creationTimestamp ?? "");
}

/** The Events about one object (its kind, namespace, name and uid), oldest first, live. */
export function ObjectEvents(props: { kind: string; namespace?: string; name: string; uid?: string }) {
  const ks = useKinds();
  const events = ks.state === "ok" ? ks.value.find((k) => k.group === CORE_GROUP && k.plural === "events") : undefined;
  const snap = useLive(events, {
    namespace: props.namespace,
    fieldSelector: `spec.involvedObject.name=${props.name},spec.involvedObject.kind=${props.kind}`,
  });
  const now = useNow();
  if (!events) return null;
  const rows = [...snap.items.values()]
    .filter((e) => {
      const seen = e?.spec?.involvedObject?.uid;
      return !props.uid || !seen || seen === props.uid;
    })
    .sort((a, b) => stamp(a).localeCompare(stamp(b)));
  return (
    <section class="events-panel" id="object-events" aria-labelledby="object-events-title">
      <h2 id="object-events-title">
        Events <span class="muted">{snap.loaded ? rows.length : "…"}</span>
      </h2>
      {rows.length === 0 ? (
        <p class="muted" id="no-events">
          {snap.loaded ? "None." : "Loading…"}
        </p>
      ) : (
        <div class="table-wrap">
          <table class="objects compact" id="events-table">
            <Head columns={["TYPE", "REASON", "AGE", "FROM", "COUNT", "MESSAGE"]} />
            <tbody>
              {rows.map((e) => (
                <tr data-reason={String(e?.spec?.reason ?? "")} class={e?.spec?.type === "Warning" ? "warning" : ""}>
                  <td>{e?.spec?.type ?? "Normal"}</td>
                  <td>{e?.spec?.reason}</td>
                  <td>{age(stamp(e) || undefined, now)}</td>
                  <td>{e?.spec?.source?.component ?? ""}</td>
                  <td class="num">{e?.spec?.count ?? 1}</td>
                  <td class="message">{e?.spec?.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** Most lines of a log kept on the page: the oldest go first. */
const LOG_LINES = 2000;

type Stream = "stdout" | "stderr";
type Choice = Stream | "both";

/**
 * One stream of an object's log (kinds with the `log` subresource: tasks), followed
 * live: the last lines, then each new one as the task writes it, read from the
 * streamed answer.
 */
function Follow(props: { path: string; stream: Stream; id: string; title?: string; find?: string }) {
  const [text, setText] = useState("");
  const [state, setState] = useState<"connecting" | "following" | "ended" | "error">("connecting");
  const [error, setError] = useState("");
  useEffect(() => {
    const ctrl = new AbortController();
    setText("");
    setState("connecting");
    (async () => {
      // Until the log can be read (a task not started yet has none) or the view
      // closes; each attempt starts again from the last lines.
      while (!ctrl.signal.aborted) {
        let kept = "";
        try {
          const resp = await request(`${props.path}?follow=true&tailLines=500&stream=${props.stream}`, {
            signal: ctrl.signal,
            headers: { Accept: "text/plain" },
          });
          setState("following");
          const reader = resp.body!.getReader();
          const decoder = new TextDecoder();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            kept += decoder.decode(value, { stream: true });
            const lines = kept.split("\n");
            if (lines.length > LOG_LINES + 1) kept = lines.slice(lines.length - LOG_LINES - 1).join("\n");
            setText(kept);
          }
          setState("ended");
          return;
        } catch (e) {
          if (ctrl.signal.aborted) return;
          setError(e instanceof Error ? e.message : String(e));
          setState("error");
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return () => ctrl.abort();
  }, [props.path, props.stream]);
  // Kept at the newest line while the reader is there; left alone once they scroll up.
  const pre = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  useEffect(() => {
    if (pre.current && atEnd.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text]);
  const label = { connecting: "Connecting…", following: "Following", ended: "Ended", error: "Not available" }[state];
  // Only the lines holding what is looked for (case aside), as `grep -i` would.
  const q = (props.find ?? "").toLowerCase();
  const lines = q ? text.split("\n").filter((l) => l.toLowerCase().includes(q)) : null;
  return (
    <div class="log-stream">
      <div class="title">
        {props.title && <h3>{props.title}</h3>}
        <span class={`link link-${state === "following" ? "live" : "connecting"}`} data-logs={state}>
          {label}
        </span>
      </div>
      {state === "error" && <p class="muted">{error}</p>}
      {lines && (
        <p class="muted" data-matches={String(lines.length)}>
          {lines.length} line{lines.length === 1 ? "" : "s"} with “{props.find}”
        </p>
      )}
      <pre
        class="yaml logs"
        id={props.id}
        data-stream={props.stream}
        ref={pre}
        tabIndex={0}
        aria-live="off"
        onScroll={(e) => {
          const p = e.target as HTMLPreElement;
          atEnd.current = p.scrollTop + p.clientHeight >= p.scrollHeight - 8;
        }}
      >
        {lines ? lines.join("\n") : text}
      </pre>
    </div>
  );
}

/** The streams a choice reads. */
function streamsOf(c: Choice): Stream[] {
  return c === "both" ? ["stdout", "stderr"] : [c];
}

/**
 * A task's log: stdout, stderr or both (one pane each), followed live; Download saves
 * the chosen streams as the server answers them without `follow` (both: stdout, then
 * stderr, each under a `==> stream <==` heading, as `tail` prints several files).
 */
export function TaskLogs(props: { path: string; name: string }) {
  const [choice, setChoice] = useState<Choice>("stdout");
  const [find, setFind] = useState("");
  const [file, setFile] = useState<{ href: string; name: string; bytes: number } | null>(null);
  const [error, setError] = useState("");
  const link = useRef<HTMLAnchorElement>(null);
  // The Blob's address is let go when another replaces it or the page closes.
  useEffect(() => () => (file ? URL.revokeObjectURL(file.href) : undefined), [file]);
  useEffect(() => {
    if (file) link.current?.click();
  }, [file]);
  const download = async () => {
    setError("");
    try {
      const streams = streamsOf(choice);
      const parts: string[] = [];
      for (const s of streams) {
        const resp = await request(`${props.path}?stream=${s}`, { headers: { Accept: "text/plain" } });
        const text = await resp.text();
        parts.push(streams.length > 1 ? `==> ${s} <==\n${text}${text.endsWith("\n") || !text ? "" : "\n"}` : text);
      }
      const blob = new Blob([parts.join(streams.length > 1 ? "\n" : "")], { type: "text/plain" });
      setFile({ href: URL.createObjectURL(blob), name: `${props.name}.${choice}.log`, bytes: blob.size });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <section class="logs-panel" aria-labelledby="logs-title">
      <div class="title">
        <h2 id="logs-title">Log</h2>
        <fieldset class="log-choice" id="log-stream">
          <legend class="visually-hidden">Stream</legend>
          {(["stdout", "stderr", "both"] as const).map((c) => (
            <label>
              <input
                type="radio"
                name="log-stream"
                id={`stream-${c}`}
                value={c}
                checked={choice === c}
                onChange={() => setChoice(c)}
              />{" "}
              {c}
            </label>
          ))}
        </fieldset>
        <label class="log-find">
          <span class="visually-hidden">Find in the log</span>
          <input
            id="log-find"
            type="search"
            placeholder="find in the log"
            autocomplete="off"
            value={find}
            onInput={(e) => setFind((e.target as HTMLInputElement).value)}
          />
        </label>
        <button type="button" id="log-download" onClick={download}>
          Download
        </button>
        {file && (
          <a id="log-file" ref={link} href={file.href} download={file.name} data-bytes={String(file.bytes)}>
            {file.name} <span class="muted">({file.bytes} bytes)</span>
          </a>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {choice === "both" ? (
        <>
          <Follow path={props.path} stream="stdout" id="logs" title="stdout" find={find} />
          <Follow path={props.path} stream="stderr" id="logs-stderr" title="stderr" find={find} />
        </>
      ) : (
        <Follow key={choice} path={props.path} stream={choice} id="logs" find={find} />
      )}
    </section>
  );
}
