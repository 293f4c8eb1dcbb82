// The official Ollama JavaScript client streaming a chat from llmd.
// OLLAMA_JS: the client's ESM entry (installed outside the repository); OLLAMA_HOST: llmd's URL.
const { Ollama } = await import(process.env.OLLAMA_JS);
const ollama = new Ollama({ host: process.env.OLLAMA_HOST });

const list = await ollama.list();
const stream = await ollama.chat({
  model: process.env.OLLAMA_MODEL,
  messages: [{ role: "user", content: "Count from one to five." }],
  stream: true,
  options: { num_predict: 24, temperature: 0 },
});
const pieces = [];
let last = null;
for await (const part of stream) {
  if (!part.done) pieces.push(part.message.content);
  last = part;
}
console.log(JSON.stringify({
  models: list.models.map((m) => m.name),
  pieces: pieces.length,
  text: pieces.join(""),
  done: last.done,
  done_reason: last.done_reason,
  eval_count: last.eval_count,
  eval_duration: last.eval_duration,
}));
