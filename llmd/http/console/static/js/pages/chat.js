// The chat playground, on the EasyVizAI API's WebSocket chat sessions (/ws/chat/{session_id}/): the daemon
// keeps the conversation (a reconnect, even after a restart, continues it), the answer streams, "cancel"
// stops it mid-way, and each answer's closing message carries its tokens/s and time to first token.
import { html, useEffect, useRef, useState } from "../lib.js";
import { Card, ErrorLine, Field, useApp, usePoll, useSocket } from "../ui.js";
import { speed } from "../format.js";

const STATE_KEY = "llmd.console.chat";

function newSessionId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** The conversation shown in this tab (the daemon stores it too, under the same session id). */
function loadState() {
  try {
    const s = JSON.parse(sessionStorage.getItem(STATE_KEY) || "null");
    if (s && s.sessionId) return s;
  } catch { /* start afresh */ }
  return { sessionId: newSessionId(), messages: [] };
}

export function Chat() {
  const { client } = useApp();
  const [state, setState] = useState(loadState);
  const [draft, setDraft] = useState("");
  const [model, setModel] = useState("");
  const [system, setSystem] = useState("");
  const [params, setParams] = useState({ temperature: 0.7, top_p: 0.9, max_length: 256 });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const socket = useRef(null);
  const log = useRef(null);
  const models = usePoll(() => client.get("/api/v1/llm/models/"), 15000);

  useEffect(() => { sessionStorage.setItem(STATE_KEY, JSON.stringify(state)); }, [state]);
  useEffect(() => { if (log.current) log.current.scrollTop = log.current.scrollHeight; }, [state.messages]);
  useEffect(() => {
    if (!model && models.data) setModel(models.data.current_model || models.data.available_models[0] || "");
  }, [models.data]);

  const patchLast = (fn) => setState((s) => {
    const msgs = s.messages.slice();
    msgs[msgs.length - 1] = fn(msgs[msgs.length - 1]);
    return { ...s, messages: msgs };
  });

  const connected = useSocket(`/ws/chat/${encodeURIComponent(state.sessionId)}/`, (msg) => {
    if (msg.type === "assistant_chunk") {
      patchLast((m) => ({ ...m, content: m.content + msg.chunk, model: msg.model }));
    } else if (msg.type === "assistant_done" || msg.type === "assistant_message") {
      patchLast((m) => ({ ...m, content: msg.content, model: msg.model, finish: msg.finish_reason,
        timing: msg.timing, usage: msg.usage, pending: false }));
      setBusy(false);
    } else if (msg.type === "error") {
      if (msg.content !== undefined) patchLast((m) => ({ ...m, content: msg.content, finish: "error", pending: false }));
      else {
        // Refused before generating: the daemon kept no trace of the message, so neither does the page.
        setState((s) => {
          const last = s.messages[s.messages.length - 1];
          return last && last.role === "assistant" && last.pending ? { ...s, messages: s.messages.slice(0, -2) } : s;
        });
      }
      setError({ message: msg.error });
      setBusy(false);
    }
  }, (ws) => { socket.current = ws; });

  const send = (e) => {
    e.preventDefault();
    const text = draft.trim();
    if (!text || busy || !socket.current || socket.current.readyState !== WebSocket.OPEN) return;
    setError(null);
    const parameters = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== null));
    const msg = { type: "chat_message", message: text, stream: true, parameters };
    if (model) msg.model = model;
    if (system.trim()) msg.system = system.trim();
    socket.current.send(JSON.stringify(msg));
    setState((s) => ({ ...s, messages: [...s.messages, { role: "user", content: text },
      { role: "assistant", content: "", pending: true }] }));
    setDraft("");
    setBusy(true);
  };
  const stop = () => { if (socket.current) socket.current.send(JSON.stringify({ type: "cancel" })); };
  const reset = () => { setState({ sessionId: newSessionId(), messages: [] }); setBusy(false); setError(null); };
  const onKey = (e) => { if (e.key === "Enter" && !e.shiftKey) send(e); };
  const setParam = (k) => (v) => setParams({ ...params, [k]: v });

  const available = models.data ? models.data.available_models : [];
  const loaded = models.data ? models.data.loaded_models : [];
  return html`<div class="page chat-page">
    <div class="page-head"><h1>Chat</h1>
      <span class=${`badge ${connected ? "ok" : "warn"}`}>${connected ? "connected" : "connecting"}</span></div>
    <div class="chat-layout">
      <${Card} title="Conversation" className="chat" actions=${html`<button type="button" class="ghost" onClick=${reset}>New chat</button>`}>
        <div class="messages" ref=${log} aria-live="polite" id="messages">
          ${state.messages.length === 0 && html`<p class="muted">Ask something. The conversation is kept by the daemon
            (session <code>${state.sessionId}</code>).</p>`}
          ${state.messages.map((m, i) => html`<div key=${i} class=${`msg ${m.role}${m.pending ? " pending" : ""}`}
              data-finish=${m.finish || ""}>
            <div class="msg-role">${m.role === "user" ? "You" : m.model || "assistant"}</div>
            <div class="msg-text">${m.content || (m.pending ? "…" : "")}</div>
            ${m.role === "assistant" && !m.pending && html`<div class="msg-meta muted small">
              ${speed(m.timing)}${m.usage ? ` · ${m.usage.completion_tokens} tokens` : ""}${m.finish && m.finish !== "stop" ? ` · ${m.finish}` : ""}</div>`}
          </div>`)}
        </div>
        <${ErrorLine} error=${error} />
        <form class="composer" onSubmit=${send}>
          <label class="grow"><span class="sr-only">Message</span>
            <textarea name="message" rows="2" placeholder="Message (Enter sends, Shift+Enter for a new line)" value=${draft}
              onInput=${(e) => setDraft(e.currentTarget.value)} onKeyDown=${onKey}></textarea></label>
          ${busy ? html`<button type="button" class="danger" id="stop" onClick=${stop}>Stop</button>`
            : html`<button type="submit" class="primary" id="send" disabled=${!connected}>Send</button>`}
        </form>
      <//>
      <${Card} title="Settings" className="chat-settings">
        <label class="field"><span>Model</span><select name="model" value=${model} onChange=${(e) => setModel(e.currentTarget.value)}>
          ${available.map((n) => html`<option value=${n} key=${n}>${n}${loaded.includes(n) ? "" : " (not loaded)"}</option>`)}
        </select></label>
        <label class="field"><span>System prompt</span><textarea rows="3" value=${system}
          onInput=${(e) => setSystem(e.currentTarget.value)}></textarea></label>
        <${Field} label="Temperature" type="number" step="0.1" min="0" max="2" value=${params.temperature} onInput=${setParam("temperature")} />
        <${Field} label="Top p" type="number" step="0.05" min="0" max="1" value=${params.top_p} onInput=${setParam("top_p")} />
        <${Field} label="Max tokens" type="number" min="1" max="4096" name="max_length" value=${params.max_length} onInput=${setParam("max_length")} />
        <${ErrorLine} error=${models.error} />
      <//>
    </div>
  </div>`;
}
