// Models: the registry (deploy, stop, delete), hub search with each repository's files, sizes and
// quantizations, and downloads with live progress from WebSocket /ws/downloads (pause, resume, cancel).
import { html, useState } from "../lib.js";
import { Badge, Card, ErrorLine, Field, Modal, Progress, useApp, usePoll, useSocket } from "../ui.js";
import { bytes, duration, num } from "../format.js";

/** Deploy ``model`` with its settings: POST /api/deployments/start (the LLM Manager API). */
function DeployDialog({ model, onClose, onDone }) {
  const { client, notify } = useApp();
  const [form, setForm] = useState({ max_model_len: null, parallel: null, n_gpu_layers: null, port: null,
    pinned: false });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body = { model_id: model.name };
    for (const [k, v] of Object.entries(form)) if (v !== null && v !== "" && !(k === "pinned" && !v)) body[k] = v;
    try {
      const res = await client.post("/api/deployments/start", body);
      notify(`${model.name}: ${res.message}`);
      onDone(res.data);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Modal} title=${`Deploy ${model.name}`} onClose=${onClose}>
    <form onSubmit=${submit} class="form-grid" id="deploy-form">
      <${Field} label="Context (tokens)" type="number" min="256" name="max_model_len" value=${form.max_model_len}
        onInput=${set("max_model_len")} hint=${`default: the model's or [engine]; trained for ${model.context_length || "?"}`} />
      <${Field} label="Slots (parallel sequences)" type="number" min="1" name="parallel" value=${form.parallel}
        onInput=${set("parallel")} hint="default: [engine] parallel" />
      <${Field} label="GPU layers" type="number" min="-1" name="n_gpu_layers" value=${form.n_gpu_layers}
        onInput=${set("n_gpu_layers")} hint="-1: all; default: all with a GPU" />
      <${Field} label="Port of its own" type="number" min="1024" max="65535" name="port" value=${form.port}
        onInput=${set("port")} hint="also serve the OpenAI API for this model alone" />
      <label class="check"><input type="checkbox" checked=${form.pinned}
        onChange=${(e) => set("pinned")(e.currentTarget.checked)} /> Pinned (never evicted or unloaded when idle)</label>
      <${ErrorLine} error=${error} />
      <div class="row end"><button type="button" class="ghost" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${busy}>${busy ? "Starting…" : "Deploy"}</button></div>
    </form>
  <//>`;
}

function Registry({ onDeploy, reloadKey }) {
  const { client, notify, confirm } = useApp();
  const list = usePoll(async () => {
    const [models, details, deps] = await Promise.all([client.get("/api/models", { size: 100 }),
      client.get("/llmd/v1/models"), client.get("/api/deployments/list")]);
    const byName = Object.fromEntries(details.models.map((m) => [m.name, m]));
    const depOf = Object.fromEntries(deps.data.items.map((d) => [d.model_id, d]));
    return models.items.map((m) => ({ ...byName[m.name], ...m, deployment: depOf[m.name] }));
  }, 5000, [reloadKey]);

  const stop = async (m) => {
    try {
      const res = await client.put(`/api/deployments/${m.deployment.deployment_id}/stop`);
      notify(`${m.name}: ${res.message}`);
    } catch (err) { notify(err.message, "bad"); }
    list.reload();
  };
  // The API's own confirmations: a running model is refused (409) unless the delete is forced.
  const remove = async (m) => {
    const owned = m.source === "hf" || m.source === "ollama";
    if (!await confirm({ title: `Delete ${m.name}?`, danger: true, confirmLabel: "Delete",
      message: owned ? "The registry entry, its log and its downloaded file are removed."
        : "The registry entry and its log are removed; the file itself stays where it is." })) return;
    try {
      await client.del(`/api/models/${m.id}`);
      notify(`${m.name} deleted`);
    } catch (err) {
      if (err.status !== 409) { notify(err.message, "bad"); return; }
      if (!await confirm({ title: `${m.name} is running`, danger: true, confirmLabel: "Stop and delete",
        message: `${err.message}. Stop it (cancelling its generations) and delete it?` })) return;
      try {
        await client.del(`/api/models/${m.id}`, { force: true });
        notify(`${m.name} stopped and deleted`);
      } catch (err2) { notify(err2.message, "bad"); }
    }
    list.reload();
  };

  return html`<${Card} title="Registry" id="registry">
    <${ErrorLine} error=${list.error} />
    ${list.data && html`<div class="table-wrap"><table><thead><tr><th>Model</th><th>State</th><th>Size</th>
      <th>Quant.</th><th>Context</th><th>Source</th><th><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${list.data.map((m) => html`<tr key=${m.id} data-model=${m.name}>
        <td><strong>${m.name}</strong>${m.aliases && m.aliases.length ? html` <span class="muted">(${m.aliases.join(", ")})</span>` : ""}</td>
        <td><${Badge} value=${m.status} /></td><td>${bytes(m.size_bytes)}</td><td>${m.quantization || "–"}</td>
        <td>${m.context_length || "–"}</td><td>${m.source}</td>
        <td class="actions">
          ${m.status === "running" || m.status === "starting"
            ? html`<button type="button" onClick=${() => stop(m)} disabled=${!m.deployment}>Stop</button>`
            : html`<button type="button" class="primary" onClick=${() => onDeploy(m)}>Deploy</button>`}
          <button type="button" class="danger" onClick=${() => remove(m)}>Delete</button></td></tr>`)}
      </tbody></table></div>`}
  <//>`;
}

/** One hub repository: its GGUF files with size and quantization, each with a Pull button. */
function HubFiles({ item, source, onPull }) {
  const { client } = useApp();
  const info = usePoll(() => client.get(`/api/models/${item.id}/info`, { source }), 0, [item.id]);
  if (info.error) return html`<${ErrorLine} error=${info.error} />`;
  if (!info.data) return html`<p class="muted">Reading the repository…</p>`;
  const files = info.data.data.files || [];
  return html`<table class="files"><thead><tr><th>File</th><th>Size</th><th>Quant.</th><th></th></tr></thead>
    <tbody>${files.map((f) => html`<tr key=${f.filename}><td>${f.filename}</td><td>${bytes(f.size)}</td>
      <td>${f.quantization || "–"}</td><td><button type="button" class="primary"
        onClick=${() => onPull(item.id, source, f.filename)}>Pull</button></td></tr>`)}</tbody></table>`;
}

function HubSearch({ onPull }) {
  const { client } = useApp();
  const [query, setQuery] = useState("");
  const [source, setSource] = useState("huggingface");
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null);
  const [busy, setBusy] = useState(false);
  const search = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setResult((await client.get("/api/models/search", { query, source, page_size: 20 })).data);
      setOpen(null);
    } catch (err) { setError(err); } finally { setBusy(false); }
  };
  return html`<${Card} title="Hub" id="hub">
    <form class="row" onSubmit=${search} role="search">
      <label class="grow"><span class="sr-only">Search the hub</span>
        <input type="search" name="query" placeholder="Search models (e.g. smollm2)" value=${query}
          onInput=${(e) => setQuery(e.currentTarget.value)} /></label>
      <label><span class="sr-only">Source</span><select value=${source} onChange=${(e) => setSource(e.currentTarget.value)}>
        <option value="huggingface">Hugging Face</option><option value="ollama">Ollama</option></select></label>
      <button type="submit" disabled=${busy}>${busy ? "Searching…" : "Search"}</button>
    </form>
    <${ErrorLine} error=${error} />
    ${result && result.from_cache && html`<p class="notice warn">From the local cache (${duration(result.cache_age_s)} old)${
      result.hub_error ? `: ${result.hub_error}` : ""}</p>`}
    ${result && html`<ul class="hub-results">${result.items.length === 0 && html`<li class="muted">Nothing found.</li>`}
      ${result.items.map((it) => html`<li key=${it.id}>
        <div class="row"><div class="grow"><strong>${it.id}</strong>
          <div class="muted small">${it.model_type || ""}${it.parameters ? ` · ${it.parameters} parameters` : ""} · ${num(it.downloads, 0)} downloads · ${num(it.likes, 0)} likes</div></div>
          <button type="button" aria-expanded=${open === it.id} onClick=${() => setOpen(open === it.id ? null : it.id)}>
            ${open === it.id ? "Hide files" : "Files"}</button></div>
        ${open === it.id && html`<${HubFiles} item=${it} source=${source} onPull=${onPull} />`}
      </li>`)}</ul>`}
  <//>`;
}

function Downloads({ onCompleted }) {
  const { client, notify } = useApp();
  const [tasks, setTasks] = useState({});
  const connected = useSocket("/ws/downloads", (msg) => {
    if (msg.type === "snapshot") setTasks(Object.fromEntries(msg.tasks.map((t) => [t.id, t])));
    else if (msg.type === "deleted") setTasks((all) => { const c = { ...all }; delete c[msg.task_id]; return c; });
    else if (msg.task) {
      setTasks((all) => {
        const before = all[msg.task.id];
        if (msg.task.status === "completed" && before && before.status !== "completed") onCompleted(msg.task);
        return { ...all, [msg.task.id]: msg.task };
      });
    }
  });
  const act = async (t, action) => {
    try {
      if (action === "delete") await client.del(`/api/downloads/${t.id}`);
      else await client.put(`/api/downloads/${t.id}/${action}`);
    } catch (err) { notify(err.message, "bad"); }
  };
  const list = Object.values(tasks).sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  return html`<${Card} title="Downloads" id="downloads" actions=${html`<span class=${`badge ${connected ? "ok" : "warn"}`}>
      ${connected ? "live" : "connecting"}</span>`}>
    ${list.length === 0 && html`<p class="muted">No downloads. Search the hub and pull a file.</p>`}
    <ul class="tasks">${list.map((t) => html`<li key=${t.id} data-task=${t.id} data-status=${t.status}>
      <div class="row"><div class="grow"><strong>${t.model_id}</strong> <span class="muted small">${t.filename || ""}</span></div>
        <${Badge} value=${t.status} /></div>
      <${Progress} value=${t.progress} label=${`${t.model_id} download`} />
      <div class="row small"><span class="grow muted">${bytes(t.downloaded_bytes)} of ${bytes(t.total_bytes)} (${num(t.progress)} %)${t.status === "downloading" ? ` · ${bytes(t.speed_bps)}/s · ${duration(t.eta_seconds)} left` : ""}
        ${t.model_name ? ` · registered as ${t.model_name}` : ""}${t.error ? ` · ${t.error}` : ""}</span>
        ${(t.status === "downloading" || t.status === "pending") && html`<button type="button" onClick=${() => act(t, "pause")}>Pause</button>`}
        ${(t.status === "paused" || t.status === "failed") && html`<button type="button" onClick=${() => act(t, "resume")}>Resume</button>`}
        ${!["completed", "cancelled", "failed"].includes(t.status) && html`<button type="button" class="danger"
          onClick=${() => act(t, "cancel")}>Cancel</button>`}
        ${["completed", "cancelled", "failed"].includes(t.status) && html`<button type="button" class="ghost"
          onClick=${() => act(t, "delete")}>Remove</button>`}
      </div></li>`)}</ul>
  <//>`;
}

export function Models() {
  const { client, notify } = useApp();
  const [deploying, setDeploying] = useState(null);
  const [reloadKey, setReloadKey] = useState(0);
  const pull = async (modelId, source, filename) => {
    try {
      const res = await client.post("/api/downloads/start", { model_id: modelId, source, filename });
      notify(res.data.created ? `Pulling ${filename}` : "A task for this file exists already");
    } catch (err) { notify(err.message, "bad"); }
  };
  return html`<div class="page">
    <div class="page-head"><h1>Models</h1></div>
    <${Registry} onDeploy=${setDeploying} reloadKey=${reloadKey} />
    <div class="two-col">
      <${HubSearch} onPull=${pull} />
      <${Downloads} onCompleted=${(t) => { notify(`${t.model_name || t.model_id} downloaded and registered`); setReloadKey((k) => k + 1); }} />
    </div>
    ${deploying && html`<${DeployDialog} model=${deploying} onClose=${() => setDeploying(null)}
      onDone=${(d) => { setDeploying(null); setReloadKey((k) => k + 1); if (d && d.deployment_id) location.hash = `#/deployments/${d.deployment_id}`; }} />`}
  </div>`;
}

