// Alert rules (create, enable, disable, delete) with their state, and the history of firings and
// resolutions; /ws/monitor's system_alert events refresh both at once.
import { html, useState } from "../lib.js";
import { Badge, Card, ErrorLine, Field, useApp, usePoll, useSocket } from "../ui.js";
import { num, when } from "../format.js";

const CHANNELS = ["journal", "webhook", "email"];

function NewRule({ onCreated }) {
  const { client, notify } = useApp();
  const empty = { name: "", condition: "", severity: "warning", notification_channels: ["journal"], description: "" };
  const [form, setForm] = useState(empty);
  const [error, setError] = useState(null);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const toggle = (c) => set("notification_channels")(form.notification_channels.includes(c)
    ? form.notification_channels.filter((x) => x !== c) : [...form.notification_channels, c]);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const rule = await client.post("/api/config/alerts", form);
      notify(`Rule ${rule.id} created`);
      setForm(empty);
      onCreated();
    } catch (err) { setError(err); }
  };
  return html`<${Card} title="New rule" id="new-rule">
    <form class="form-grid" onSubmit=${submit}>
      <${Field} label="Name" name="name" required maxlength="100" value=${form.name} onInput=${set("name")} />
      <${Field} label="Condition" name="condition" required maxlength="200" value=${form.condition}
        onInput=${set("condition")} placeholder="cpu_percent > 90 for 5m"
        hint="metric operator threshold [for duration]: cpu_percent, memory_percent, disk_percent, gpu_utilization, gpu_temperature, error_rate, response_time, …" />
      <label class="field"><span>Severity</span><select name="severity" value=${form.severity}
        onChange=${(e) => set("severity")(e.currentTarget.value)}>
        ${["info", "warning", "critical"].map((s) => html`<option value=${s} key=${s}>${s}</option>`)}</select></label>
      <fieldset class="field"><legend>Notify</legend>${CHANNELS.map((c) => html`<label class="check" key=${c}>
        <input type="checkbox" checked=${form.notification_channels.includes(c)} onChange=${() => toggle(c)} /> ${c}</label>`)}
      </fieldset>
      <${Field} label="Description" name="description" value=${form.description} onInput=${set("description")} />
      <${ErrorLine} error=${error} />
      <div class="row end"><button type="submit" class="primary">Create rule</button></div>
    </form>
  <//>`;
}

export function Alerts() {
  const { client, notify, confirm } = useApp();
  const rules = usePoll(() => client.get("/api/config/alerts", { size: 100 }), 5000);
  const history = usePoll(() => client.get("/api/config/alerts/history", { size: 50 }), 10000);
  useSocket("/ws/monitor", (msg) => { if (msg.type === "system_alert") { rules.reload(); history.reload(); } },
    (ws) => ws.send(JSON.stringify({ action: "subscribe", events: ["system_alerts"] })));

  const act = async (rule, action) => {
    try {
      if (action === "delete") {
        if (!await confirm({ title: `Delete ${rule.name}?`, danger: true, confirmLabel: "Delete",
          message: "The rule goes (a firing rule resolves at the next sample); its history stays." })) return;
        await client.del(`/api/config/alerts/${rule.id}`);
        notify(`${rule.name} deleted`);
      } else {
        await client.post(`/api/config/alerts/${rule.id}/${action}`);
      }
    } catch (err) { notify(err.message, "bad"); }
    rules.reload();
  };

  return html`<div class="page">
    <div class="page-head"><h1>Alerts</h1></div>
    <${ErrorLine} error=${rules.error} />
    <${Card} title="Rules" id="rules">
      ${rules.data && html`<div class="table-wrap"><table><thead><tr><th>Rule</th><th>Condition</th><th>Severity</th>
        <th>State</th><th>Notify</th><th><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${rules.data.items.map((r) => html`<tr key=${r.id} data-rule=${r.id} data-state=${r.state}>
          <td><strong>${r.name}</strong>${r.builtin ? html` <span class="muted small">(built in)</span>` : ""}</td>
          <td><code>${r.condition}</code></td><td><${Badge} value=${r.severity} /></td>
          <td><${Badge} value=${r.enabled ? r.state : "disabled"} />${r.state !== "ok" && r.last_value !== null
            ? html` <span class="muted small">${num(r.last_value, 2)}</span>` : ""}</td>
          <td>${r.notification_channels.join(", ") || "–"}</td>
          <td class="actions">${r.builtin ? html`<span class="muted small">change it in Settings</span>` : html`
            ${r.enabled ? html`<button type="button" onClick=${() => act(r, "disable")}>Disable</button>`
              : html`<button type="button" onClick=${() => act(r, "enable")}>Enable</button>`}
            <button type="button" class="danger" onClick=${() => act(r, "delete")}>Delete</button>`}</td></tr>`)}
        </tbody></table></div>`}
    <//>
    <div class="two-col">
      <${NewRule} onCreated=${() => rules.reload()} />
      <${Card} title="History" id="history">
        <${ErrorLine} error=${history.error} />
        ${history.data && history.data.items.length === 0 && html`<p class="muted">Nothing has fired.</p>`}
        ${history.data && html`<ul class="plain history">${history.data.items.map((h) => html`<li key=${h.id} data-state=${h.state}>
          <${Badge} value=${h.state} /> <strong>${h.rule_name}</strong> <span class="muted small">${when(h.timestamp)}</span>
          <div class="small">${h.message}</div></li>`)}</ul>`}
      <//>
    </div>
  </div>`;
}
