// Deployments: state, memory (the estimate before load and the measurement after, by part; the budget
// counts the larger), slots, and the model's log followed live (SSE: GET /api/deployments/{id}/logs?follow=true).
import { html, useEffect, useRef, useState } from "../lib.js";
import { Badge, Card, ErrorLine, useApp, usePoll } from "../ui.js";
import { duration, mib, when } from "../format.js";

const MAX_LINES = 1000;

function LogView({ id }) {
  const { client } = useApp();
  const [lines, setLines] = useState([]);
  const [following, setFollowing] = useState(true);
  const [error, setError] = useState(null);
  const box = useRef(null);
  const stick = useRef(true);
  useEffect(() => {
    if (!following) return undefined;
    const abort = new AbortController();
    setLines([]);
    setError(null);
    client.stream(`/api/deployments/${encodeURIComponent(id)}/logs?follow=true&lines=200`, (line) => {
      setLines((all) => [...all.slice(-(MAX_LINES - 1)), line]);
    }, abort.signal).catch((err) => { if (err.name !== "AbortError") setError(err); });
    return () => abort.abort();
  }, [id, following]);
  useEffect(() => {
    // Keep the newest line in view unless the reader scrolled up to read.
    if (box.current && stick.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines]);
  const onScroll = () => {
    const b = box.current;
    stick.current = b.scrollHeight - b.scrollTop - b.clientHeight < 40;
  };
  return html`<${Card} title="Log" id="log" actions=${html`<label class="check"><input type="checkbox" checked=${following}
      onChange=${(e) => setFollowing(e.currentTarget.checked)} /> Follow</label>`}>
    <${ErrorLine} error=${error} />
    <pre class="log" ref=${box} onScroll=${onScroll} tabindex="0" aria-label="Deployment log" aria-live="off"
      data-lines=${lines.length}>${lines.map((l) => html`<span class=${`log-${(l.level || "info").toLowerCase()}`}>${
        new Date((l.ts || 0) * 1000).toLocaleTimeString()} ${l.level || ""} ${l.message || JSON.stringify(l)}</span>`)}</pre>
  <//>`;
}

function Memory({ d }) {
  const est = (d.memory && d.memory.estimate) || {};
  const meas = (d.memory && d.memory.measured) || {};
  const parts = ["weights", "tokenizer", "kv_cache", "compute", "output", "embedding"];
  return html`<div class="memory">
    <p><strong>${mib(d.memory_mb)}</strong> counted in the budget (the larger of the estimate ${mib(d.memory_estimate_mb)} and the measurement ${mib(d.memory_measured_mb)}).</p>
    <div class="table-wrap"><table class="compact"><thead><tr><th>Estimate</th>${parts.map((p) => html`<th>${p}</th>`)}
      <th>GPU</th></tr></thead><tbody><tr><td>MiB</td>${parts.map((p) => html`<td>${est[p] !== undefined ? est[p] : "–"}</td>`)}
      <td>${est.gpu !== undefined ? est.gpu : "–"}</td></tr></tbody></table></div>
    <div class="table-wrap"><table class="compact"><thead><tr><th>Measured</th><th>load</th><th>runtime</th><th>embedding</th>
      <th>GPU</th></tr></thead><tbody><tr><td>MiB</td><td>${meas.load ?? "–"}</td><td>${meas.runtime ?? "–"}</td>
      <td>${meas.embedding ?? "–"}</td><td>${meas.gpu ?? "–"}</td></tr></tbody></table></div>
  </div>`;
}

export function Deployments({ arg }) {
  const { client, notify, confirm } = useApp();
  const list = usePoll(() => client.get("/api/deployments/list"), 3000);
  const items = list.data ? list.data.data.items : [];
  const selected = items.find((d) => d.deployment_id === arg) || null;

  const act = async (d, action) => {
    try {
      if (action === "delete") {
        if (!await confirm({ title: `Delete ${d.deployment_id}?`, danger: true, confirmLabel: "Delete",
          message: `The deployment of ${d.model_id} is stopped at once and its record deleted; the model and its log stay.` })) return;
        await client.del(`/api/deployments/${d.deployment_id}`);
        notify(`${d.deployment_id} deleted`);
        if (arg === d.deployment_id) location.hash = "#/deployments";
      } else {
        notify(`${d.model_id}: ${(await client.put(`/api/deployments/${d.deployment_id}/${action}`)).message}`);
      }
    } catch (err) { notify(err.message, "bad"); }
    list.reload();
  };

  return html`<div class="page">
    <div class="page-head"><h1>Deployments</h1></div>
    <${ErrorLine} error=${list.error} />
    <${Card} title="All deployments" id="deployments">
      <div class="table-wrap"><table><thead><tr><th>Id</th><th>Model</th><th>State</th><th>Memory</th><th>Slots</th>
        <th>Device</th><th>Port</th><th>Idle</th><th><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${items.map((d) => html`<tr key=${d.deployment_id} data-deployment=${d.deployment_id}
            class=${d.deployment_id === arg ? "selected" : ""}>
          <td><a href=${`#/deployments/${d.deployment_id}`}>${d.deployment_id}</a></td><td>${d.model_id}${d.pinned ? html` <span class="badge" title="never evicted or unloaded when idle">pinned</span>` : ""}</td>
          <td><${Badge} value=${d.status} /></td>
          <td title=${`estimate ${mib(d.memory_estimate_mb)}, measured ${mib(d.memory_measured_mb)}`}>${mib(d.memory_mb)}</td>
          <td>${d.settings ? `${d.active} busy / ${d.settings.parallel}, ${d.queued} queued` : "–"}</td>
          <td>${d.device || "–"}</td><td>${d.port || "–"}</td><td>${d.status === "running" ? duration(d.idle_s) : "–"}</td>
          <td class="actions">${d.status === "running" && html`<button type="button" onClick=${() => act(d, "stop")}>Stop</button>`}
            ${(d.status === "running" || d.status === "stopped" || d.status === "error") && html`<button type="button"
              onClick=${() => act(d, "restart")}>${d.status === "running" ? "Restart" : "Start"}</button>`}
            <button type="button" class="danger" onClick=${() => act(d, "delete")}>Delete</button></td></tr>`)}
        </tbody></table></div>
      ${list.data && items.length === 0 && html`<p class="muted">Nothing deployed. Deploy a model from the <a href="#/models">Models</a> page.</p>`}
    <//>
    ${arg && !selected && list.data && html`<p class="error">No deployment ${arg}.</p>`}
    ${selected && html`<div class="two-col">
      <${Card} title=${`${selected.deployment_id}: ${selected.model_id}`} id="deployment">
        <dl class="facts">
          <dt>State</dt><dd><${Badge} value=${selected.status} />${selected.stop_reason ? ` (${selected.stop_reason})` : ""}</dd>
          <dt>Started</dt><dd>${when(selected.started_at)}</dd>
          <dt>Context</dt><dd>${selected.settings ? selected.settings.n_ctx : selected.max_model_len}</dd>
          <dt>Slots</dt><dd>${selected.settings ? selected.settings.parallel : "–"} (${selected.active} busy, ${selected.queued} queued)</dd>
          <dt>GPU layers</dt><dd>${selected.settings ? selected.settings.n_gpu_layers : "–"} (${selected.device || "–"})</dd>
          <dt>Endpoints</dt><dd><code>${selected.endpoints ? selected.endpoints.chat : "–"}</code>${selected.port ? html`, port ${selected.port}` : ""}</dd>
          ${selected.note && html`<dt>Note</dt><dd>${selected.note}</dd>`}
          ${selected.error && html`<dt>Error</dt><dd class="error">${selected.error}</dd>`}
        </dl>
        <${Memory} d=${selected} />
      <//>
      <${LogView} id=${selected.deployment_id} key=${selected.deployment_id} />
    </div>`}
  </div>`;
}
