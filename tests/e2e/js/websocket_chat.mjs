// Seed 000's "WebSocket 客户端示例", run under `node --experimental-websocket` (Node >= 20.10).
//
// Between the marker lines the code is the document's, unchanged. The harness
// points its ws://localhost:8000 at LLMD_URL (the test daemon), and, since the
// document's snippet never closes the socket, closes it at the answer's
// closing message (assistant_done) and reports what arrived as one JSON line.
const origin = new URL(process.env.LLMD_URL || 'http://127.0.0.1:8000');
const NodeWebSocket = globalThis.WebSocket;
if (typeof NodeWebSocket !== 'function') throw new Error('no global WebSocket: run node --experimental-websocket');
const sockets = [];
globalThis.WebSocket = class extends NodeWebSocket {
  constructor(url, protocols) {
    const u = new URL(url);
    u.host = origin.host;
    super(u.toString(), protocols);
    sockets.push(this);
  }
};
const origError = console.error;
const seen = { types: {}, chunks: '', errors: [], done: null };
console.error = (...args) => { seen.errors.push(args.join(' ')); origError(...args); };

// ---- begin: verbatim from shared/seeds/000 ----
const ws = new WebSocket('ws://localhost:8000/ws/chat/demo_session/');

ws.onopen = function() {
  console.log('WebSocket 连接已建立');
  
  // 发送消息
  ws.send(JSON.stringify({
    type: 'chat_message',
    message: '你好，请介绍一下你自己',
    stream: true
  }));
};

ws.onmessage = function(event) {
  const data = JSON.parse(event.data);
  
  if (data.type === 'assistant_chunk') {
    console.log(data.chunk);
  } else if (data.type === 'error') {
    console.error(data.error);
  }
};
// ---- end: verbatim ----

const timer = setTimeout(() => { origError('timed out'); process.exit(2); }, 120000);
ws.addEventListener('message', (event) => {
  const data = JSON.parse(event.data);
  seen.types[data.type] = (seen.types[data.type] || 0) + 1;
  if (data.type === 'assistant_chunk') seen.chunks += data.chunk;
  if (data.type === 'assistant_done' || data.type === 'error') {
    seen.done = data;
    ws.close();
  }
});
ws.addEventListener('close', () => {
  clearTimeout(timer);
  console.log('RESULT ' + JSON.stringify(seen));
  process.exit(seen.done && seen.done.type === 'assistant_done' ? 0 : 1);
});
