// Keyboard shortcuts, as in many web consoles: `g` then a letter goes to a main page,
// `/` goes to the page's name filter (else its namespace filter), `?` shows the list. Tab, Enter and the skip link work
// as on any page; these only save steps. Keys typed into a field are never taken.

import { useEffect, useState } from "preact/hooks";

import { BASE, listHref, navigate } from "./router";

/** `g` then the key: where it goes and what it is called. */
export const GO_TO: [string, string, string][] = [
  ["d", `${BASE}/`, "Dashboard"],
  ["s", listHref("services"), "Services"],
  ["j", listHref("jobs"), "Jobs"],
  ["t", listHref("tasks"), "Tasks"],
  ["n", listHref("nodes"), "Nodes"],
  ["e", listHref("events"), "Events"],
  ["k", `${BASE}/k`, "All kinds"],
];

/** How long after `g` its second key counts. */
const CHORD_MS = 1500;

function typingIn(t: EventTarget | null): boolean {
  const e = t as HTMLElement | null;
  if (!e || !e.tagName) return false;
  return e.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(e.tagName);
}

/** Listens for the shortcuts while mounted; answers whether the list is shown, and a way to close it. */
export function useShortcuts(): [boolean, (open: boolean) => void] {
  const [help, setHelp] = useState(false);
  useEffect(() => {
    let gAt = 0;
    const onKey = (ev: KeyboardEvent) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || typingIn(ev.target)) return;
      if (ev.key === "Escape") {
        setHelp(false);
        return;
      }
      if (ev.key === "?") {
        ev.preventDefault();
        setHelp((h) => !h);
        return;
      }
      if (ev.key === "/") {
        const field =
          document.querySelector<HTMLInputElement>("main input[type=search]") ??
          document.querySelector<HTMLInputElement>("main form.filter input");
        if (field) {
          ev.preventDefault();
          field.focus();
          field.select();
        }
        return;
      }
      if (ev.key === "g") {
        gAt = Date.now();
        return;
      }
      if (gAt && Date.now() - gAt <= CHORD_MS) {
        const to = GO_TO.find(([k]) => k === ev.key);
        gAt = 0;
        if (to) {
          ev.preventDefault();
          setHelp(false);
          navigate(to[1]);
          // The new page's content, so that Tab goes on from there.
          requestAnimationFrame(() => document.getElementById("main")?.focus());
        }
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);
  return [help, setHelp];
}

/** The list of shortcuts, as a dialog. */
export function ShortcutHelp(props: { onClose: () => void }) {
  return (
    <div class="shortcuts" id="shortcuts" role="dialog" aria-modal="false" aria-labelledby="shortcuts-title">
      <h2 id="shortcuts-title">Keyboard shortcuts</h2>
      <table class="compact">
        <tbody>
          {GO_TO.map(([k, , label]) => (
            <tr>
              <td>
                <kbd>g</kbd> <kbd>{k}</kbd>
              </td>
              <td>{label}</td>
            </tr>
          ))}
          <tr>
            <td>
              <kbd>/</kbd>
            </td>
            <td>The page's filter (by name, else by namespace)</td>
          </tr>
          <tr>
            <td>
              <kbd>?</kbd>
            </td>
            <td>This list</td>
          </tr>
          <tr>
            <td>
              <kbd>Esc</kbd>
            </td>
            <td>Close it</td>
          </tr>
        </tbody>
      </table>
      <button type="button" id="shortcuts-close" onClick={props.onClose} autofocus>
        Close
      </button>
    </div>
  );
}
