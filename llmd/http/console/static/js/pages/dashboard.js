// The box at a glance: health, uptime and version; CPU, memory, disk and GPU from the metrics history
// (GET /api/monitoring/metrics); each deployment's tokens/s, queue and time to first token; firing alerts.
// The charts refresh on a timer and at once when /ws/monitor reports a change of state or an alert.
import { html, useMemo, useState } from "../lib.js";
import { Badge, Card, Chart, ErrorLine, Stat, isAdmin, useApp, usePoll, useSocket } from "../ui.js";
import { duration, mib, num, pct, when } from "../format.js";

// Each range: the history's bucket, the window and how often it is read again. The last hour is read as
// raw samples (one per monitor.interval_s), so it moves with every sample.
const RANGES = {
  "1h": { label: "1 h", interval: "raw", seconds: 3600, refresh: 3000 },
  "24h": { label: "24 h", interval: "5m", seconds: 86400, refresh: 60000 },
  "7d": { label: "7 d", interval: "1h", seconds: 7 * 86400, refresh: 300000 },
};

/** The rows of a metrics answer as uPlot columns: ``{x, col(field), byModel(field)}``. */
function columns(rows) {
  const x = rows.map((r) => Date.parse(r.timestamp) / 1000);
  const col = (field) => rows.map((r) => (r[field] === undefined ? null : r[field]));
  const byModel = (field) => {
    const names = [...new Set(rows.flatMap((r) => (r.models || []).map((m) => m.model_name)))].sort();
    return names.map((name) => ({ label: name, values: rows.map((r) => {
      const m = (r.models || []).find((mm) => mm.model_name === name);
      return m && m[field] !== undefined ? m[field] : null;
    }) }));
  };
  return { x, col, byModel };
}

function lastOf(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

export function Dashboard() {
  const { client, principal } = useApp();
  const admin = isAdmin(principal);
  const [range, setRange] = useState("1h");
  const r = RANGES[range];

  const status = usePoll(() => (admin ? client.get("/api/system/status") : client.get("/health")), 5000, [admin]);
  const metrics = usePoll(async () => {
    if (!admin) return null;
    const q = { interval: r.interval, start_time: new Date(Date.now() - r.seconds * 1000).toISOString() };
    const [box, disk, model] = await Promise.all([
      client.get("/api/monitoring/metrics", q),
      client.get("/api/monitoring/metrics", { ...q, metric_type: "disk" }),
      client.get("/api/monitoring/metrics", { ...q, metric_type: "model" }),
    ]);
    return { box: box.metrics, disk: disk.metrics, model: model.metrics };
  }, r.refresh, [range, admin]);
  const deployments = usePoll(() => (admin ? client.get("/api/deployments/list") : null), 5000, [admin]);
  const alerts = usePoll(() => (admin ? client.get("/api/config/alerts", { size: 100 }) : null), 10000, [admin]);

  // Changes of state and alerts arrive at once; the figures follow at the next read.
  useSocket(admin ? "/ws/monitor" : null, (msg) => {
    if (msg.type === "system_alert") alerts.reload();
    if (msg.type === "model_status_update") { deployments.reload(); status.reload(); }
  }, (ws) => ws.send(JSON.stringify({ action: "subscribe", events: ["model_status", "system_alerts"] })));

  const charts = useMemo(() => {
    if (!metrics.data) return null;
    const box = columns(metrics.data.box);
    const disk = columns(metrics.data.disk);
    const model = columns(metrics.data.model);
    return {
      cpu: { x: box.x, series: [{ label: "CPU %", values: box.col("cpu_percent") }] },
      memory: { x: box.x, series: [{ label: "memory %", values: box.col("memory_percent") }] },
      gpu: { x: box.x, series: [{ label: "GPU %", values: box.col("gpu_utilization") }] },
      gpuSeen: metrics.data.box.some((row) => row.gpu_utilization !== null && row.gpu_utilization !== undefined),
      disk: { x: disk.x, series: [{ label: "disk %", values: disk.col("disk_percent") }] },
      tps: { x: model.x, series: model.byModel("tokens_per_second") },
      queue: { x: model.x, series: model.byModel("queue_depth") },
      ttft: { x: model.x, series: model.byModel("ttft") },
      slots: { x: model.x, series: model.byModel("active_slots") },
    };
  }, [metrics.data]);

  const s = status.data;
  const firing = alerts.data ? alerts.data.items.filter((a) => a.state === "firing") : [];

  return html`<div class="page">
    <div class="page-head"><h1>Dashboard</h1>
      ${admin && html`<div class="segmented" role="group" aria-label="Time range">
        ${Object.entries(RANGES).map(([key, v]) => html`<button type="button" key=${key} aria-pressed=${key === range}
          onClick=${() => setRange(key)}>${v.label}</button>`)}</div>`}
    </div>
    <${ErrorLine} error=${status.error} />
    ${s && (admin ? html`<div class="stats" id="health">
        <${Stat} label="Health" value=${html`<${Badge} value=${s.status} />`}
          hint=${Object.entries(s.checks || {}).filter(([, c]) => c.status !== "ok").map(([k, c]) => `${k}: ${c.status}`).join(", ") || "every check ok"} />
        <${Stat} label="Uptime" value=${duration(s.uptime)} hint=${`llmd ${s.version}`} />
        <${Stat} label="Models" value=${`${s.models.running} running`} hint=${`${s.models.total} registered${s.models.error ? `, ${s.models.error} in error` : ""}`} />
        <${Stat} label="CPU" value=${pct(s.resources.cpu_percent)} />
        <${Stat} label="Memory" value=${pct(s.resources.memory_percent)} />
        <${Stat} label="Disk" value=${pct(s.resources.disk_percent)} hint="models directory" />
        <${Stat} label="GPU" value=${s.gpu.length ? s.gpu.map((g) => pct(g.utilization, 0)).join(" / ") : "none"}
          hint=${s.gpu.length ? s.gpu.map((g) => g.name).join(", ") : s.gpu_reason} />
      </div>`
      : html`<div class="stats" id="health">
        <${Stat} label="Health" value=${html`<${Badge} value=${s.status} />`} hint=${s.details && s.details.default_model} />
        <${Stat} label="Uptime" value=${duration(s.details && s.details.uptime_s)} hint=${`llmd ${s.version}`} />
      </div>
      <p class="muted">The box's figures, models and alerts need an admin credential.</p>`)}

    ${admin && html`
      ${firing.length > 0 && html`<${Card} title="Firing alerts" className="alerting" id="firing">
        <ul class="plain">${firing.map((a) => html`<li key=${a.id}><${Badge} value=${a.severity} /> <strong>${a.name}</strong>${" "}
          <code>${a.condition}</code> <span class="muted">value ${num(a.last_value, 2)}, since ${when(a.since)}</span></li>`)}</ul>
      <//>`}
      <${ErrorLine} error=${metrics.error} />
      ${charts && html`<div class="charts" id="charts">
        <${Card} title="CPU"><${Chart} title="CPU use" x=${charts.cpu.x} series=${charts.cpu.series} unit="%" min=${0} max=${100} /><//>
        <${Card} title="Memory"><${Chart} title="Memory in use" x=${charts.memory.x} series=${charts.memory.series} unit="%" min=${0} max=${100} /><//>
        <${Card} title="Disk"><${Chart} title="Disk use (models directory)" x=${charts.disk.x} series=${charts.disk.series} unit="%" min=${0} max=${100} /><//>
        <${Card} title="GPU"><${Chart} title="GPU utilization" x=${charts.gpuSeen ? charts.gpu.x : []}
          series=${charts.gpu.series} unit="%" min=${0} max=${100}
          empty=${(s && s.gpu_reason) || "No GPU figures in this range."} /><//>
      </div>
      <h2 class="section">Deployments</h2>
      <div class="charts">
        <${Card} title="Tokens per second"><${Chart} title="Completion tokens/s" x=${charts.tps.x} series=${charts.tps.series} min=${0} /><//>
        <${Card} title="Queue"><${Chart} title="Queued requests" x=${charts.queue.x} series=${charts.queue.series} min=${0} /><//>
        <${Card} title="Time to first token"><${Chart} title="TTFT (s)" x=${charts.ttft.x} series=${charts.ttft.series} unit="s" min=${0} /><//>
        <${Card} title="Busy slots"><${Chart} title="Active slots" x=${charts.slots.x} series=${charts.slots.series} min=${0} /><//>
      </div>`}
      ${deployments.data && html`<${Card} title="Live deployments">
        <div class="table-wrap"><table><thead><tr><th>Model</th><th>State</th><th>Tokens/s</th><th>TTFT</th>
          <th>Queue</th><th>Slots busy</th><th>Memory</th></tr></thead>
        <tbody>${deployments.data.data.items.filter((d) => d.status !== "stopped").map((d) => {
          const tps = charts && charts.tps.series.find((x) => x.label === d.model_id);
          const ttft = charts && charts.ttft.series.find((x) => x.label === d.model_id);
          return html`<tr key=${d.deployment_id}>
            <td><a href=${`#/deployments/${d.deployment_id}`}>${d.model_id}</a></td>
            <td><${Badge} value=${d.status} /></td>
            <td>${num(tps ? lastOf(tps.values) : null)}</td><td>${ttft && lastOf(ttft.values) !== null ? duration(lastOf(ttft.values)) : "–"}</td>
            <td>${d.queued}</td><td>${d.active} / ${d.settings ? d.settings.parallel : "–"}</td><td>${mib(d.memory_mb)}</td></tr>`;
        })}</tbody></table></div>
      <//>`}
    `}
  </div>`;
}
