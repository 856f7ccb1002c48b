// The colour theme: the system's preference (`auto`), or light or dark as the user
// chose with the switch in the bar, kept in this browser's local storage.

import { useState } from "preact/hooks";

/** What the switch offers, in its order. */
export type Theme = "auto" | "light" | "dark";
const THEMES: Theme[] = ["auto", "light", "dark"];
const KEY = "corral.theme";

function stored(): Theme {
  try {
    const t = localStorage.getItem(KEY);
    return THEMES.includes(t as Theme) ? (t as Theme) : "auto";
  } catch {
    return "auto";
  }
}

/** Puts `t` on the root element, where the style sheet reads it. */
export function applyTheme(t: Theme = stored()): void {
  if (t === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
}

/** The theme and a way to go to the next one (kept for the next visit). */
export function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(stored);
  const next = () => {
    const t = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length]!;
    try {
      localStorage.setItem(KEY, t);
    } catch {
      // Storage refused (a private window, say): the choice lasts this page only.
    }
    applyTheme(t);
    setTheme(t);
  };
  return [theme, next];
}
