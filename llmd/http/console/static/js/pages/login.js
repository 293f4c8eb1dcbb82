// Sign in: a user's password for a token (POST /api/auth/token), or an API key. Both are sent in a
// request body or a header, never in a URL; the password is not kept.
import { html, useState } from "../lib.js";
import { ErrorLine, useApp } from "../ui.js";

export function Login({ reason }) {
  const { client } = useApp();
  const [mode, setMode] = useState("password");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "password") await client.login(username, password);
      else await client.useKey(key.trim());
    } catch (err) {
      setError(err.status === 401 ? { message: mode === "password" ? "Wrong user name or password."
        : "The daemon refused this key." } : err);
      setPassword("");
    } finally {
      setBusy(false);
    }
  };

  return html`<main class="login" id="main">
    <form class="card" onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title"><img src="favicon.svg" alt="" width="28" height="28" /> llmd</h1>
      ${reason && html`<p class="notice info" role="status">${reason}</p>`}
      ${mode === "password" ? html`
        <label class="field"><span>User name</span>
          <input name="username" autocomplete="username" required autofocus value=${username}
            onInput=${(e) => setUsername(e.currentTarget.value)} /></label>
        <label class="field"><span>Password</span>
          <input name="password" type="password" autocomplete="current-password" required value=${password}
            onInput=${(e) => setPassword(e.currentTarget.value)} /></label>`
      : html`<label class="field"><span>API key</span>
          <input name="key" type="password" autocomplete="off" required autofocus placeholder="llmd_…" value=${key}
            onInput=${(e) => setKey(e.currentTarget.value)} /></label>`}
      <${ErrorLine} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
      <button type="button" class="link" onClick=${() => { setMode(mode === "password" ? "key" : "password"); setError(null); }}>
        ${mode === "password" ? "Use an API key instead" : "Use a user name and password"}</button>
      <p class="muted small">Users are made on the box: <code>llmctl users add NAME</code>. The session ends when
        its token expires or this tab closes.</p>
    </form>
  </main>`;
}
