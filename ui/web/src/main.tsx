// The interface's shell: log in with a token, then the page the path names, under a
// bar of links to the main lists, who is logged in, and a way to log out.

import "./style.css";

import type { ComponentChildren } from "preact";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { ApiError, type Me, setToken, token, whenUnauthorized, whoami } from "./api";
import { Dashboard, KindsPage, ListPage, NewPage, ObjectPage } from "./pages";
import { JobPage } from "./pages/jobs";
import { ShortcutHelp, useShortcuts } from "./keys";
import { applyTheme, useTheme } from "./theme";
import { NodePage, NodesPage } from "./pages/nodes";
import { ServicePage, ServicesPage } from "./pages/services";
import { BASE, interceptLinks, listHref, type Route, useRoute } from "./router";

function Login(props: { onLogin: (me: Me) => void; expired?: boolean }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(props.expired ? "The token is no longer accepted: log in again." : null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const t = value.trim();
    if (!t) {
      setError("Paste a token first.");
      return;
    }
    setBusy(true);
    setToken(t);
    try {
      props.onLogin(await whoami());
    } catch (err) {
      setToken(null);
      setError(err instanceof ApiError ? `The server refused the token: ${err.message}` : `Cannot reach the server: ${err}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="login">
      <h1>Corral</h1>
      <form onSubmit={submit} aria-describedby="login-help">
        <label for="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          autofocus
        />
        <button id="login" type="submit" disabled={busy}>
          Log in
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
      <div id="login-help" class="help">
        <p>
          Use the token of the configuration <code>corral up</code> wrote (the <code>token:</code> line of{" "}
          <code>~/.corral/config</code>), or one made with <code>corral token create --user NAME</code>. What you may do
          here is what the roles bound to that user allow.
        </p>
        <p>
          The token is kept in this tab only (its session storage): closing the tab or <em>Log out</em> forgets it. It
          stays valid on the server until it expires or is revoked (<code>corral token revoke ID</code>).
        </p>
      </div>
    </main>
  );
}

function Page(props: { route: Route }) {
  const r = props.route;
  switch (r.page) {
    case "dashboard":
      return <Dashboard />;
    case "kinds":
      return <KindsPage />;
    case "list":
      if (r.kind === "services" || r.kind === "svc") return <ServicesPage namespace={r.namespace} />;
      if (r.kind === "nodes" || r.kind === "no") return <NodesPage />;
      return <ListPage slug={r.kind} namespace={r.namespace} />;
    case "new":
      return <NewPage slug={r.kind} namespace={r.namespace} />;
    case "object":
      if (r.kind === "jobs" && r.namespace) return <JobPage namespace={r.namespace} name={r.name} />;
      if (r.kind === "nodes" && !r.namespace) return <NodePage name={r.name} />;
      if (r.namespace && (r.kind === "services" || r.kind === "svc")) {
        return <ServicePage namespace={r.namespace} name={r.name} />;
      }
      return <ObjectPage slug={r.kind} namespace={r.namespace} name={r.name} />;
    case "notFound":
      return (
        <section>
          <h1>Not found</h1>
          <p>
            Nothing is at <code>{r.path}</code>. <a href={`${BASE}/`}>Dashboard</a>
          </p>
        </section>
      );
  }
}

function Shell(props: { me: Me; onLogout: () => void; children: ComponentChildren }) {
  const links: [string, string][] = [
    [`${BASE}/`, "Dashboard"],
    [listHref("services"), "Services"],
    [listHref("jobs"), "Jobs"],
    [listHref("tasks"), "Tasks"],
    [listHref("nodes"), "Nodes"],
    [listHref("events"), "Events"],
    [`${BASE}/k`, "All kinds"],
  ];
  const here = location.pathname;
  const [help, setHelp] = useShortcuts();
  const [theme, nextTheme] = useTheme();
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="bar">
        <a class="brand" href={`${BASE}/`}>
          Corral
        </a>
        <nav aria-label="Main">
          {links.map(([href, label]) => {
            const path = href.split("?")[0]!;
            // The dashboard and the index of kinds are theirs alone; a list is current
            // on its objects' pages too.
            const exact = path === `${BASE}/` || path === `${BASE}/k`;
            const current = exact ? here === path : here === path || here.startsWith(`${path}/`);
            return (
              <a href={href} aria-current={current ? "page" : undefined}>
                {label}
              </a>
            );
          })}
        </nav>
        <span class="me" id="me" title={props.me.groups.join(", ")}>
          {props.me.username}
        </span>
        <button
          id="theme"
          type="button"
          data-theme={theme}
          onClick={nextTheme}
          title="Colour theme: automatic (as the system), light or dark"
          aria-label={`Colour theme: ${theme}`}
        >
          ◐ {{ auto: "Auto", light: "Light", dark: "Dark" }[theme]}
        </button>
        <button id="keys" type="button" onClick={() => setHelp(!help)} title="Keyboard shortcuts (?)" aria-expanded={help}>
          ?
        </button>
        <button id="logout" type="button" onClick={props.onLogout} title="Forget the token in this tab">
          Log out
        </button>
      </header>
      {help && <ShortcutHelp onClose={() => setHelp(false)} />}
      <main id="main" tabIndex={-1}>
        {props.children}
      </main>
    </>
  );
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(token() !== null);
  const [expired, setExpired] = useState(false);
  useEffect(() => {
    whenUnauthorized(() => {
      setToken(null);
      setMe(null);
      setExpired(true);
    });
    if (token() === null) return;
    whoami().then(
      (m) => {
        setMe(m);
        setChecking(false);
      },
      () => {
        setToken(null);
        setChecking(false);
      },
    );
  }, []);
  if (checking) return <p class="loading">Loading…</p>;
  if (!me) {
    return (
      <Login
        expired={expired}
        onLogin={(m) => {
          setExpired(false);
          setMe(m);
        }}
      />
    );
  }
  const logout = () => {
    setToken(null);
    setMe(null);
  };
  return (
    <Shell me={me} onLogout={logout}>
      <Page route={route} />
    </Shell>
  );
}

applyTheme();
interceptLinks();
render(<App />, document.getElementById("app")!);
