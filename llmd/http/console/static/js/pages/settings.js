// Settings: every runtime setting from GET /api/config (change one with PUT /api/config, or drop its
// stored override), and, for admins, API keys and users (the llmd Admin API, /llmd/v1).
import { html, useState } from "../lib.js";
import { Badge, Card, ErrorLine, Field, useApp, usePoll } from "../ui.js";
import { when } from "../format.js";

/** The value typed for a setting, read as the setting's current type. */
function coerce(text, current) {
  if (typeof current === "number") return Number(text);
  if (typeof current === "boolean") return text === "true";
  if (Array.isArray(current) || (current && typeof current === "object")) return JSON.parse(text);
  return text;
}

function SettingRow({ name, s, onSave, onReset }) {
  const [editing, setEditing] = useState(false);
  const shown = typeof s.value === "object" ? JSON.stringify(s.value) : String(s.value);
  const [text, setText] = useState(shown);
  const save = async (e) => {
    e.preventDefault();
    if (await onSave(name, text, s.value)) setEditing(false);
  };
  return html`<tr data-setting=${name}>
    <td><code>${name}</code></td>
    <td>${editing ? html`<form class="row" onSubmit=${save}>
        ${typeof s.value === "boolean"
          ? html`<select aria-label=${name} value=${text} onChange=${(e) => setText(e.currentTarget.value)}>
              <option value="true">true</option><option value="false">false</option></select>`
          : html`<input aria-label=${name} value=${text} onInput=${(e) => setText(e.currentTarget.value)} autofocus />`}
        <button type="submit" class="primary">Save</button>
        <button type="button" class="ghost" onClick=${() => { setEditing(false); setText(shown); }}>Cancel</button></form>`
      : html`<span class="value">${shown}</span>${s.pending !== undefined ? html` <span class="badge warn"
          title="stored; applies when the daemon restarts">pending ${JSON.stringify(s.pending)}</span>` : ""}`}</td>
    <td class="muted small">${s.source}</td><td><${Badge} value=${s.applies} tone=${s.applies === "now" ? "ok" : ""} /></td>
    <td class="actions">${!editing && !name.startsWith("paths.") && html`<button type="button"
        onClick=${() => setEditing(true)}>Edit</button>`}
      ${s.source.startsWith("override") && html`<button type="button" class="ghost" onClick=${() => onReset(name)}>Reset</button>`}</td>
  </tr>`;
}

function Config() {
  const { client, notify } = useApp();
  const cfg = usePoll(() => client.get("/api/config"), 0);
  const [filter, setFilter] = useState("");
  const [error, setError] = useState(null);
  const put = async (body, what) => {
    setError(null);
    try {
      const res = await client.put("/api/config", body);
      notify(`${what}${res.restart_required && Object.keys(res.restart_required).length ? " (some settings apply at the next restart)" : ""}`);
      cfg.reload();
      return true;
    } catch (err) { setError(err); return false; }
  };
  const save = (name, text, current) => {
    let value;
    try { value = coerce(text, current); } catch { setError({ message: `${name}: not valid JSON` }); return false; }
    return put({ settings: { [name]: value } }, `${name} saved`);
  };
  const rows = cfg.data ? Object.entries(cfg.data.settings).filter(([k]) => k.includes(filter.trim())) : [];
  return html`<${Card} title="Runtime settings" id="config" actions=${html`<label><span class="sr-only">Filter settings</span>
      <input type="search" placeholder="Filter (e.g. monitor.)" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} /></label>`}>
    <${ErrorLine} error=${cfg.error || error} />
    <p class="muted small">Changes are stored in the daemon's database and win over the config file; settings
      marked ${html`<em>restart</em>`} apply when the daemon restarts.</p>
    <div class="table-wrap tall"><table><thead><tr><th>Setting</th><th>Value</th><th>From</th><th>Applies</th><th></th></tr></thead>
      <tbody>${rows.map(([k, s]) => html`<${SettingRow} key=${`${k}=${JSON.stringify(s.value)}`} name=${k} s=${s}
        onSave=${save} onReset=${(n) => put({ reset: [n] }, `${n} reset`)} />`)}</tbody></table></div>
  <//>`;
}

function Keys() {
  const { client, notify, confirm } = useApp();
  const keys = usePoll(() => client.get("/llmd/v1/keys"), 0);
  const [form, setForm] = useState({ name: "", scope: "inference", expires_in_s: null });
  const [secret, setSecret] = useState(null);
  const [error, setError] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    const body = { name: form.name, scope: form.scope };
    if (form.expires_in_s) body.expires_in_s = form.expires_in_s;
    try {
      const res = await client.post("/llmd/v1/keys", body);
      setSecret({ name: res.key.name, secret: res.secret });
      setForm({ name: "", scope: "inference", expires_in_s: null });
      keys.reload();
    } catch (err) { setError(err); }
  };
  const revoke = async (k) => {
    if (!await confirm({ title: `Revoke ${k.name}?`, danger: true, confirmLabel: "Revoke",
      message: "Every request with this key gets a 401 from now on." })) return;
    try { await client.del(`/llmd/v1/keys/${k.id}`); notify(`${k.name} revoked`); } catch (err) { notify(err.message, "bad"); }
    keys.reload();
  };
  return html`<${Card} title="API keys" id="keys">
    <${ErrorLine} error=${keys.error} />
    ${secret && html`<div class="notice ok" role="status"><p>The key <strong>${secret.name}</strong> — copy it now, it is not
      shown again:</p><code class="secret">${secret.secret}</code>
      <button type="button" class="ghost" onClick=${() => setSecret(null)}>Done</button></div>`}
    ${keys.data && html`<div class="table-wrap"><table><thead><tr><th>Name</th><th>Starts with</th><th>Scope</th><th>Models</th>
      <th>Expires</th><th>Last used</th><th></th></tr></thead><tbody>
      ${keys.data.keys.map((k) => html`<tr key=${k.id}><td>${k.name}</td><td><code>${k.prefix}</code></td><td>${k.scope}</td>
        <td>${k.models ? k.models.join(", ") : "all"}</td><td>${k.expires_at ? when(k.expires_at) : "never"}</td>
        <td>${when(k.last_used_at)}</td><td><button type="button" class="danger" onClick=${() => revoke(k)}>Revoke</button></td></tr>`)}
      </tbody></table></div>`}
    <form class="row wrap" onSubmit=${create}>
      <${Field} label="Name" required value=${form.name} onInput=${(v) => setForm({ ...form, name: v })} />
      <label class="field"><span>Scope</span><select value=${form.scope} onChange=${(e) => setForm({ ...form, scope: e.currentTarget.value })}>
        <option value="inference">inference</option><option value="admin">admin</option></select></label>
      <${Field} label="Expires in (s)" type="number" min="1" value=${form.expires_in_s} onInput=${(v) => setForm({ ...form, expires_in_s: v })} />
      <button type="submit">Create key</button>
    </form>
    <${ErrorLine} error=${error} />
  <//>`;
}

function Users() {
  const { client, notify, confirm, principal } = useApp();
  const users = usePoll(() => client.get("/llmd/v1/users"), 0);
  const [form, setForm] = useState({ username: "", password: "", scope: "inference" });
  const [error, setError] = useState(null);
  const add = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await client.post("/llmd/v1/users", form);
      notify(`${form.username} added`);
      setForm({ username: "", password: "", scope: "inference" });
      users.reload();
    } catch (err) { setError(err); }
  };
  const remove = async (u) => {
    const self = principal && principal.name === u.username;
    if (!await confirm({ title: `Remove ${u.username}?`, danger: true, confirmLabel: "Remove",
      message: self ? "That is you: your session ends at once." : "Their tokens stop working at once." })) return;
    try { await client.del(`/llmd/v1/users/${encodeURIComponent(u.username)}`); notify(`${u.username} removed`); } catch (err) { notify(err.message, "bad"); }
    users.reload();
  };
  return html`<${Card} title="Users" id="users">
    <${ErrorLine} error=${users.error} />
    ${users.data && html`<div class="table-wrap"><table><thead><tr><th>User</th><th>Scope</th><th>Created</th><th></th></tr></thead><tbody>
      ${users.data.users.map((u) => html`<tr key=${u.username}><td>${u.username}</td><td>${u.scope}</td><td>${when(u.created_at)}</td>
        <td><button type="button" class="danger" onClick=${() => remove(u)}>Remove</button></td></tr>`)}</tbody></table></div>`}
    <form class="row wrap" onSubmit=${add}>
      <${Field} label="User name" required autocomplete="off" value=${form.username} onInput=${(v) => setForm({ ...form, username: v })} />
      <${Field} label="Password" type="password" required minlength="8" autocomplete="new-password" value=${form.password}
        onInput=${(v) => setForm({ ...form, password: v })} />
      <label class="field"><span>Scope</span><select value=${form.scope} onChange=${(e) => setForm({ ...form, scope: e.currentTarget.value })}>
        <option value="inference">inference</option><option value="admin">admin</option></select></label>
      <button type="submit">Add user</button>
    </form>
    <${ErrorLine} error=${error} />
  <//>`;
}

export function Settings() {
  return html`<div class="page">
    <div class="page-head"><h1>Settings</h1></div>
    <div class="two-col"><${Keys} /><${Users} /></div>
    <${Config} />
    <p class="muted small">The console is built on Preact (<a href="vendor/licenses/preact.LICENSE.txt">MIT</a>),
      htm (<a href="vendor/licenses/htm.LICENSE.txt">Apache-2.0</a>) and uPlot
      (<a href="vendor/licenses/uplot.LICENSE.txt">MIT</a>), served by this daemon.</p>
  </div>`;
}
