// The console's only way to the daemon: its public APIs, with the user's credential.
//
// The credential (a token from POST /api/auth/token, or an API key) lives in this tab's
// sessionStorage and goes out only as an "Authorization: Bearer" header, or, for a WebSocket
// (whose handshake a browser cannot give headers), as the subprotocol "bearer.<credential>".
// It never appears in a URL. A browser does not attach it to a request on its own, so another
// site cannot make this browser act with it (no CSRF); the page's Content-Security-Policy
// keeps foreign scripts from reading it. docs/security.md explains the choice.

const STORAGE_KEY = "llmd.console.session";

/** A refused call, whatever the API's envelope: status, code, message and the field at fault. */
export class ApiError extends Error {
  constructor(status, code, message, field, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

/** The message, code and field of an error body in any of llmd's envelopes (docs/api.md). */
export function parseError(status, body) {
  let message = `HTTP ${status}`;
  let code = String(status);
  let field = null;
  let details = null;
  if (body && typeof body === "object") {
    const e = body.error;
    if (e && typeof e === "object") { // {"error": {"code", "message", "details"}} and OpenAI's
      message = e.message || message;
      code = e.code || e.type || code;
      details = e.details || null;
      field = e.param || (details && !Array.isArray(details) && details.field) || null;
      if (Array.isArray(details) && details[0] && details[0].field) field = details[0].field;
    } else if (body.success === false) { // the LLM Manager API
      message = body.message || message;
      code = body.error || code;
      field = body.field || null;
      details = body.details || null;
    } else if (typeof e === "string") { // EasyVizAI, Ollama
      message = e;
    } else if (typeof body.detail === "string") { // LLaMA Local API and unowned paths
      message = body.detail;
    }
  } else if (typeof body === "string" && body) {
    message = body;
  }
  return new ApiError(status, code, message, field, details);
}

/** The user's credential, who it is, and every call to the daemon made with it. */
export class Client {
  constructor() {
    this.session = null; // {credential, kind: "token"|"key", username, expiresAt (ms) | null}
    this.listeners = new Set();
    this.expiryTimer = null;
    this.restore();
  }

  /** Called with (session, reason) whenever the session begins or ends. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      if (saved && saved.credential && (!saved.expiresAt || saved.expiresAt > Date.now())) this.begin(saved, false);
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      sessionStorage.removeItem(STORAGE_KEY);
    }
  }

  begin(session, save = true) {
    this.session = session;
    if (save) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    clearTimeout(this.expiryTimer);
    if (session.expiresAt) {
      // The token stops working at its expiry; end the session then rather than at the next refusal.
      this.expiryTimer = setTimeout(() => this.end("Your session expired: sign in again."),
        Math.max(0, session.expiresAt - Date.now()));
    }
    this.listeners.forEach((fn) => fn(this.session, null));
  }

  /** Forget the credential (sign out, expiry, a 401); ``reason`` is shown on the sign-in page. */
  end(reason = null) {
    clearTimeout(this.expiryTimer);
    const had = this.session !== null;
    this.session = null;
    // Everything the console kept in this tab goes with the session (the chat's conversation too).
    Object.keys(sessionStorage).filter((k) => k.startsWith("llmd.console.")).forEach((k) => sessionStorage.removeItem(k));
    if (had || reason) this.listeners.forEach((fn) => fn(null, reason));
  }

  /** A user's password for a token (POST /api/auth/token); the token is kept, the password is not. */
  async login(username, password) {
    const body = await this.request("POST", "/api/auth/token", { username, password }, { anonymous: true });
    const expiresAt = body.expires_in ? Date.now() + body.expires_in * 1000 : null;
    this.begin({ credential: body.access_token, kind: "token", username, expiresAt });
  }

  /** An API key instead of a password (a box with keys and no users); checked before it is kept. */
  async useKey(key) {
    const who = await this.request("GET", "/llmd/v1/auth", undefined, { credential: key });
    this.begin({ credential: key, kind: "key", username: (who.principal && who.principal.name) || "API key",
      expiresAt: null });
  }

  headers(extra, credential) {
    const h = { Accept: "application/json", ...extra };
    const cred = credential || (this.session && this.session.credential);
    if (cred) h.Authorization = `Bearer ${cred}`;
    return h;
  }

  /** One call; the parsed JSON answer, or an ApiError. A 401 ends the session. */
  async request(method, path, body, opts = {}) {
    const init = { method, headers: this.headers(body !== undefined ? { "Content-Type": "application/json" } : {},
      opts.credential), cache: "no-store", credentials: "omit", signal: opts.signal };
    if (opts.anonymous) delete init.headers.Authorization;
    if (body !== undefined) init.body = JSON.stringify(body);
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "NETWORK", "The daemon did not answer (is it running?)", null, null);
    }
    const text = await resp.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch { /* a text answer */ }
    if (!resp.ok) {
      const err = parseError(resp.status, data);
      if (resp.status === 401 && !opts.anonymous && !opts.credential && this.session) {
        this.end("The daemon refused the credential (expired or revoked): sign in again.");
      }
      throw err;
    }
    return data;
  }

  get(path, query) { return this.request("GET", withQuery(path, query)); }
  post(path, body, query) { return this.request("POST", withQuery(path, query), body); }
  put(path, body, query) { return this.request("PUT", withQuery(path, query), body); }
  del(path, query) { return this.request("DELETE", withQuery(path, query)); }

  /** Read a Server-Sent Events answer (fetch, so that the credential is a header); calls ``onData`` with
   * each event's data (parsed as JSON where it is) until the stream ends or ``signal`` aborts it. */
  async stream(path, onData, signal) {
    const resp = await fetch(path, { headers: this.headers({ Accept: "text/event-stream" }), signal,
      cache: "no-store", credentials: "omit" });
    if (!resp.ok) {
      let data = null;
      try { data = await resp.json(); } catch { /* not JSON */ }
      if (resp.status === 401 && this.session) this.end("The daemon refused the credential: sign in again.");
      throw parseError(resp.status, data);
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5)).join("\n");
        if (!data) continue; // a keep-alive comment
        if (data === "[DONE]") return;
        let parsed = data;
        try { parsed = JSON.parse(data); } catch { /* text */ }
        onData(parsed);
      }
    }
  }

  /** A WebSocket to ``path`` on this host, with the credential as its subprotocol. */
  socket(path) {
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
    const cred = this.session && this.session.credential;
    return cred ? new WebSocket(url, [`bearer.${cred}`]) : new WebSocket(url);
  }
}

/** ``path`` with the query's defined values. */
export function withQuery(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
