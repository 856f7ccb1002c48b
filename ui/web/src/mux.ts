// Every live collection of this tab over one connection: `POST /watches` carries all
// the tab's watches (each authorized by the server as if it were asked alone), and the
// answer's lines say which watch each event is for. Over HTTP/1.1 a browser keeps six
// connections to a server across all its tabs; one watch per collection would let two
// busy tabs use them up.
//
// When the set of watches changes (a page opens or closes a collection, a watch ends
// and must start again), the request is made again with every watch's latest
// resourceVersion, so no change is lost between the two.

import { ApiError, request } from "./api";

/** One watch of the tab, as a live collection hands it over. */
export interface Sub {
  /** The watch's path, from the latest resourceVersion the collection holds. */
  path: () => string;
  /** The request carrying it is answered: its events follow. */
  onOpen: () => void;
  /** One of its events, as the single watch would send it. */
  onEvent: (event: any) => void;
  /** It ended: refused with the server's `Status` (410 Gone, say), or `null` when its stream closed. */
  onEnd: (status: any) => void;
  /** The connection broke (or could not be made): it is made again by itself. */
  onBroken: (why: string) => void;
}

/** How long changes to the set of watches are gathered before the request is made again. */
const GATHER_MS = 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Mux {
  private subs = new Map<string, Sub>();
  private next = 0;
  private ctrl: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;

  /** Adds a watch; returns its id. */
  add(sub: Sub): string {
    const id = String(this.next++);
    this.subs.set(id, sub);
    this.schedule();
    return id;
  }

  /** Drops a watch. */
  remove(id: string): void {
    if (this.subs.delete(id)) this.schedule();
  }

  /** Makes the request again soon, with every watch from where it stands. */
  schedule(delay = GATHER_MS): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.ctrl?.abort();
      this.ctrl = null;
      if (this.subs.size > 0) void this.open();
    }, delay);
  }

  private async open(): Promise<void> {
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const carried = [...this.subs.entries()];
    const broken = (why: string) => {
      for (const [id, s] of carried) if (this.subs.get(id) === s) s.onBroken(why);
    };
    try {
      const resp = await request("/watches", {
        method: "POST",
        signal: ctrl.signal,
        headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
        body: JSON.stringify({ watches: carried.map(([id, s]) => ({ id, path: s.path() })) }),
      });
      this.attempt = 0;
      for (const [id, s] of carried) if (this.subs.get(id) === s) s.onOpen();
      const reader = resp.body!.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          const s = this.subs.get(String(msg.id));
          if (!s) continue;
          if ("event" in msg) s.onEvent(msg.event);
          else s.onEnd(msg.end ?? null);
        }
      }
      if (ctrl.signal.aborted) return;
      broken("the server closed the watch");
    } catch (e) {
      if (ctrl.signal.aborted) return;
      broken(e instanceof ApiError ? e.message : e instanceof Error ? e.message : String(e));
    }
    if (this.ctrl !== ctrl) return;
    this.ctrl = null;
    await sleep(Math.min(500 * 2 ** this.attempt, 8000));
    this.attempt += 1;
    // Unless a change of the watches made the request again meanwhile.
    if (this.ctrl === null) this.schedule(0);
  }
}

/** The tab's multiplexer. */
export const mux = new Mux();
