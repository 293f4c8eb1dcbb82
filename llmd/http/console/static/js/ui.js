// Shared pieces of the pages: the client's context, polling, charts, dialogs, notices, progress bars.
import {
  createContext, html, uPlot, useCallback, useContext, useEffect, useRef, useState,
} from "./lib.js";

/** {client, principal, notify, confirm}: given to every page by main.js. */
export const AppContext = createContext(null);
export const useApp = () => useContext(AppContext);

/** Whether the signed-in principal may call admin routes (the API decides; this only hides buttons). */
export const isAdmin = (principal) => Boolean(principal && principal.scope === "admin");

/** Call ``load`` now and every ``ms`` while the tab is visible; ``{data, error, reload, loading}``. */
export function usePoll(load, ms, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const latest = useRef(load);
  latest.current = load;
  const run = useCallback(async () => {
    try {
      const data = await latest.current();
      setState({ data, error: null, loading: false });
    } catch (error) {
      if (error.name !== "AbortError") setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, []);
  useEffect(() => {
    run();
    if (!ms) return undefined;
    const timer = setInterval(() => { if (!document.hidden) run(); }, ms);
    return () => clearInterval(timer);
  }, [ms, ...deps]);
  return { ...state, reload: run };
}

/** A WebSocket kept open while the component lives (reconnecting with a back-off); ``onMessage`` gets each
 * parsed message, ``onOpen`` the socket. Returns whether it is connected. */
export function useSocket(path, onMessage, onOpen) {
  const { client } = useApp();
  const [connected, setConnected] = useState(false);
  const handlers = useRef({ onMessage, onOpen });
  handlers.current = { onMessage, onOpen };
  useEffect(() => {
    if (!path) return undefined;
    let ws = null;
    let closed = false;
    let delay = 500;
    let timer = null;
    const connect = () => {
      ws = client.socket(path);
      ws.onopen = () => { delay = 500; setConnected(true); if (handlers.current.onOpen) handlers.current.onOpen(ws); };
      ws.onmessage = (ev) => {
        let msg = ev.data;
        try { msg = JSON.parse(ev.data); } catch { /* text */ }
        handlers.current.onMessage(msg, ws);
      };
      ws.onclose = () => {
        setConnected(false);
        if (!closed) { timer = setTimeout(connect, delay); delay = Math.min(delay * 2, 10000); }
      };
    };
    connect();
    return () => { closed = true; clearTimeout(timer); if (ws) ws.close(); };
  }, [path]);
  return connected;
}

export function Card({ title, actions, children, className = "", id }) {
  return html`<section class=${`card ${className}`} id=${id} aria-label=${title}>
    ${(title || actions) && html`<header class="card-head"><h2>${title}</h2>
      ${actions && html`<div class="card-actions">${actions}</div>`}</header>`}
    ${children}
  </section>`;
}

export function Stat({ label, value, hint, tone = "" }) {
  return html`<div class=${`stat ${tone}`}><div class="stat-label">${label}</div>
    <div class="stat-value">${value}</div>${hint && html`<div class="stat-hint">${hint}</div>`}</div>`;
}

const TONES = {
  running: "ok", healthy: "ok", ok: "ok", completed: "ok", resolved: "ok", enabled: "ok",
  starting: "warn", pending: "warn", stopping: "warn", downloading: "info", paused: "warn", degraded: "warn",
  warning: "warn", loading: "warn",
  error: "bad", failed: "bad", unhealthy: "bad", firing: "bad", critical: "bad",
  stopped: "", cancelled: "", disabled: "", info: "info",
};

export function Badge({ value, tone }) {
  return html`<span class=${`badge ${tone !== undefined ? tone : TONES[value] || ""}`}>${value}</span>`;
}

export function ErrorLine({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}
    ${error.field ? html` <span class="muted">(${error.field})</span>` : ""}</p>`;
}

/** A determinate progress bar (role=progressbar); its width is set through the CSSOM, which the CSP allows. */
export function Progress({ value, label }) {
  const v = Math.max(0, Math.min(100, Number(value) || 0));
  return html`<div class="progress" role="progressbar" aria-label=${label || "progress"} aria-valuemin="0"
      aria-valuemax="100" aria-valuenow=${v.toFixed(1)}><div class="progress-bar" style=${{ width: `${v}%` }}></div></div>`;
}

const PALETTE = ["#2f7de1", "#e1692f", "#2fa86b", "#a34fd1", "#d13f5b", "#b3a12a", "#2fb3c4"];

/** A time-series chart (uPlot). ``x`` are Unix seconds; ``series`` is ``[{label, values}]``. */
export function Chart({ title, x, series, unit = "", height = 180, min, max, empty }) {
  const box = useRef(null);
  const plot = useRef(null);
  const shape = series.map((s) => s.label).join("|");
  useEffect(() => {
    if (!box.current) return undefined;
    const width = Math.max(200, box.current.clientWidth || 300);
    const fmt = (u, v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(v >= 100 ? 0 : 1)}${unit}`);
    const opts = {
      width, height,
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2,
        value: fmt, spanGaps: false, points: { size: 4 } }))],
      scales: { x: { time: true }, y: min !== undefined || max !== undefined
        ? { range: (u, lo, hi) => [min !== undefined ? min : lo, max !== undefined ? Math.max(max, hi) : hi] } : {} },
      axes: [{ stroke: "currentColor", grid: { stroke: "rgba(128,128,128,.15)" } },
        { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,.15)" }, size: 56,
          values: (u, vals) => vals.map((v) => `${v}${unit}`) }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    plot.current = new uPlot(opts, [x, ...series.map((s) => s.values)], box.current);
    const resize = new ResizeObserver(() => {
      if (plot.current && box.current) plot.current.setSize({ width: Math.max(200, box.current.clientWidth), height });
    });
    resize.observe(box.current);
    return () => { resize.disconnect(); plot.current.destroy(); plot.current = null; };
  }, [shape, unit, height]);
  useEffect(() => {
    if (plot.current) plot.current.setData([x, ...series.map((s) => s.values)]);
  }, [x, series]);
  const points = x.length;
  return html`<figure class="chart" data-points=${points} aria-label=${`${title}: ${points} points`}>
    <figcaption>${title}</figcaption>
    <div class="chart-box" ref=${box}></div>
    ${points === 0 && html`<p class="muted chart-empty">${empty || "No samples in this range yet."}</p>`}
  </figure>`;
}

/** A modal dialog (the <dialog> element: focus kept inside, Esc closes). */
export function Modal({ title, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const cancel = (e) => { e.preventDefault(); onClose(); };
    d.addEventListener("cancel", cancel);
    return () => d.removeEventListener("cancel", cancel);
  }, []);
  return html`<dialog ref=${ref} class="modal" aria-label=${title}>
    <header class="card-head"><h2>${title}</h2>
      <button type="button" class="ghost" aria-label="Close" onClick=${onClose}>✕</button></header>
    ${children}
  </dialog>`;
}

/** The confirmation dialog behind ``confirm({title, message, confirmLabel, danger})`` (a promise). */
export function ConfirmHost({ request, onAnswer }) {
  if (!request) return null;
  return html`<${Modal} title=${request.title} onClose=${() => onAnswer(false)}>
    <p>${request.message}</p>
    <div class="row end">
      <button type="button" class="ghost" onClick=${() => onAnswer(false)}>Cancel</button>
      <button type="button" class=${request.danger ? "danger" : "primary"} autofocus
        onClick=${() => onAnswer(true)}>${request.confirmLabel || "OK"}</button>
    </div>
  <//>`;
}

/** Notices in a live region (screen readers announce them), gone after a few seconds. */
export function Notices({ items, onDismiss }) {
  return html`<div class="notices" aria-live="polite">
    ${items.map((n) => html`<div key=${n.id} class=${`notice ${n.tone}`} role=${n.tone === "bad" ? "alert" : "status"}>
      <span>${n.text}</span><button type="button" class="ghost" aria-label="Dismiss"
        onClick=${() => onDismiss(n.id)}>✕</button></div>`)}
  </div>`;
}

/** A labelled input bound to ``value``; ``type`` number gives a number (or null when empty). */
export function Field({ label, value, onInput, type = "text", hint, ...rest }) {
  const change = (e) => {
    const raw = e.currentTarget.value;
    onInput(type === "number" ? (raw === "" ? null : Number(raw)) : raw);
  };
  return html`<label class="field"><span>${label}</span>
    <input type=${type} value=${value === null || value === undefined ? "" : value} onInput=${change} ...${rest} />
    ${hint && html`<small class="muted">${hint}</small>`}</label>`;
}

/** The scope a page needs, when the principal lacks it. */
export function NeedsAdmin() {
  return html`<${Card} title="Admin only"><p>This page needs an admin credential. You can use the <a href="#/chat">chat playground</a>.</p><//>`;
}
