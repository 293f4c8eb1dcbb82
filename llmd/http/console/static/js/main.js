// The console's shell: who is signed in, the navigation (hash routes, so that the daemon serves one
// page), notices and confirmations, and the page of the current route.
import { html, render, useCallback, useEffect, useMemo, useState } from "./lib.js";
import { Client } from "./api.js";
import { AppContext, ConfirmHost, ErrorLine, NeedsAdmin, Notices, isAdmin } from "./ui.js";
import { Dashboard } from "./pages/dashboard.js";
import { Models } from "./pages/models.js";
import { Deployments } from "./pages/deployments.js";
import { Chat } from "./pages/chat.js";
import { Alerts } from "./pages/alerts.js";
import { Settings } from "./pages/settings.js";
import { Login } from "./pages/login.js";

const PAGES = [
  { path: "dashboard", label: "Dashboard", page: Dashboard, admin: false },
  { path: "models", label: "Models", page: Models, admin: true },
  { path: "deployments", label: "Deployments", page: Deployments, admin: true },
  { path: "chat", label: "Chat", page: Chat, admin: false },
  { path: "alerts", label: "Alerts", page: Alerts, admin: true },
  { path: "settings", label: "Settings", page: Settings, admin: true },
];

/** The route in the hash: ``#/deployments/deploy_1`` is ``{page: "deployments", arg: "deploy_1"}``. */
function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return { page: parts[0] || "dashboard", arg: parts[1] || null };
}

function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

function App({ client }) {
  const route = useRoute();
  const [boot, setBoot] = useState({ loading: true, authEnabled: null, principal: null, error: null });
  const [reason, setReason] = useState(null);
  const [notices, setNotices] = useState([]);
  const [confirmReq, setConfirmReq] = useState(null);

  const notify = useCallback((text, tone = "ok") => {
    const id = Math.random().toString(36).slice(2);
    setNotices((n) => [...n.slice(-3), { id, text, tone }]);
    setTimeout(() => setNotices((n) => n.filter((x) => x.id !== id)), tone === "bad" ? 9000 : 4000);
  }, []);
  const confirm = useCallback((req) => new Promise((resolve) => setConfirmReq({ ...req, resolve })), []);
  const answer = (yes) => { confirmReq.resolve(yes); setConfirmReq(null); };

  // Who is this? /health (public) says whether auth is on; /llmd/v1/auth who the credential is.
  const identify = useCallback(async () => {
    try {
      const health = await client.request("GET", "/health", undefined, { anonymous: true });
      const authEnabled = Boolean(health.details && health.details.auth && health.details.auth.enabled);
      let principal = null;
      if (!authEnabled || client.session) {
        try {
          principal = (await client.get("/llmd/v1/auth")).principal;
        } catch (err) {
          if (err.status !== 401) throw err;
        }
      }
      setBoot({ loading: false, authEnabled, principal, error: null });
    } catch (error) {
      setBoot({ loading: false, authEnabled: null, principal: null, error });
    }
  }, [client]);

  useEffect(() => {
    identify();
    return client.subscribe((session, why) => {
      if (!session) setReason(why);
      else setReason(null);
      identify();
    });
  }, []);

  const ctx = useMemo(() => ({ client, principal: boot.principal, authEnabled: boot.authEnabled, notify, confirm }),
    [client, boot.principal, boot.authEnabled]);

  if (boot.loading) return html`<p class="boot">Loading…</p>`;
  if (boot.error) {
    return html`<main class="content"><${ErrorLine} error=${boot.error} />
      <button type="button" onClick=${identify}>Try again</button></main>`;
  }
  if (boot.authEnabled && !boot.principal) {
    return html`<${AppContext.Provider} value=${ctx}><${Login} reason=${reason} /><//>`;
  }
  const admin = isAdmin(boot.principal);
  const current = PAGES.find((p) => p.path === route.page) || PAGES[0];
  const Page = current.admin && !admin ? NeedsAdmin : current.page;
  const who = boot.principal;
  return html`<${AppContext.Provider} value=${ctx}>
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>
      Skip to content</a>
    <header class="top">
      <a class="brand" href="#/dashboard"><img src="favicon.svg" alt="" width="22" height="22" /> llmd</a>
      <nav aria-label="Pages"><ul>
        ${PAGES.filter((p) => admin || !p.admin).map((p) => html`<li key=${p.path}>
          <a href=${`#/${p.path}`} aria-current=${p === current ? "page" : undefined}>${p.label}</a></li>`)}
      </ul></nav>
      <div class="who">
        ${boot.authEnabled
          ? html`<span class="muted" title=${`scope: ${who.scope}`}>${who.name} (${who.scope})</span>
            <button type="button" class="ghost" id="logout" onClick=${() => client.end("You signed out.")}>Sign out</button>`
          : html`<span class="badge warn" title="auth.mode: everyone who reaches this address is admin">auth off</span>`}
      </div>
    </header>
    <main id="main" class="content" tabindex="-1">
      <${Page} arg=${route.arg} key=${current.path} />
    </main>
    <${Notices} items=${notices} onDismiss=${(id) => setNotices((n) => n.filter((x) => x.id !== id))} />
    <${ConfirmHost} request=${confirmReq} onAnswer=${answer} />
  <//>`;
}

const client = new Client();
const root = document.getElementById("app");
root.classList.remove("boot");
root.textContent = "";
render(html`<${App} client=${client} />`, root);
