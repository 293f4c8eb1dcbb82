// The LLM Inference Service API document's WebSocket section, run under `node --experimental-websocket`.
//
// Between the marker lines the code is the document's two snippets ("连接WebSocket" and "订阅事件"),
// unchanged; the second runs once the socket is open, as a page would run it (a WebSocket cannot send
// before it opens). The harness points ws://your-server:8000 at LLMD_URL (the test daemon), adds
// ?token=LLMD_TOKEN when auth is on (browsers cannot set headers on a WebSocket), records what
// arrives, and closes the socket once the rule named LLMD_ALERT_NAME has resolved (or after 180 s).
const origin = new URL(process.env.LLMD_URL || 'http://127.0.0.1:8000');
const token = process.env.LLMD_TOKEN || '';
const NodeWebSocket = globalThis.WebSocket;
if (typeof NodeWebSocket !== 'function') throw new Error('no global WebSocket: run node --experimental-websocket');
globalThis.WebSocket = class extends NodeWebSocket {
  constructor(url, protocols) {
    const u = new URL(url);
    u.host = origin.host;
    if (token) u.searchParams.set('token', token);
    super(u.toString(), protocols);
  }
};
const seen = { types: {}, model_status: [], alerts: [], replies: [] };

// ---- begin: verbatim from shared/seeds/002 ----
const ws = new WebSocket('ws://your-server:8000/ws/monitor');
// ---- end: verbatim ----

ws.addEventListener('open', () => {
  // ---- begin: verbatim from shared/seeds/002 ----
  ws.send(JSON.stringify({
    "action": "subscribe",
    "events": ["model_status", "gpu_metrics", "system_alerts"]
  }));
  // ---- end: verbatim ----
  console.log('OPEN');
});

const timer = setTimeout(() => { console.error('timed out'); finish(2); }, 180000);
function finish(code) {
  clearTimeout(timer);
  console.log('RESULT ' + JSON.stringify(seen));
  ws.close();
  process.exitCode = code;
}
ws.addEventListener('message', (event) => {
  const msg = JSON.parse(event.data);
  seen.types[msg.type] = (seen.types[msg.type] || 0) + 1;
  if (msg.type === 'model_status_update') seen.model_status.push(msg.data);
  else if (msg.type === 'system_alert') {
    seen.alerts.push(msg.data);
    console.log('ALERT ' + msg.data.state);  // the test waits for these lines
    if (msg.data.state === 'resolved' && msg.data.rule_name === process.env.LLMD_ALERT_NAME) finish(0);
  } else seen.replies.push(msg);
  if (msg.type === 'subscribed') console.log('SUBSCRIBED');
});
ws.addEventListener('error', (e) => { console.error('error', e.message || e); finish(1); });
