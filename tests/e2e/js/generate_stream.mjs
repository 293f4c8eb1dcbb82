// Seed 000's "JavaScript 客户端示例" (streaming generation), run under Node >= 20.
//
// Between the marker lines the code is the document's, unchanged. The page
// that the document's snippet runs in gives relative URLs their origin; here
// the harness does that, resolving them against LLMD_URL (the test daemon).
const origin = process.env.LLMD_URL;
if (!origin) throw new Error('set LLMD_URL');
const nodeFetch = globalThis.fetch;
globalThis.fetch = (url, init) => nodeFetch(new URL(url, origin), init);

// ---- begin: verbatim from shared/seeds/000 ----
// 流式生成
const response = await fetch('/api/v1/llm/generate/stream/', {
  method: 'POST',
  headers: {
    'Content-Type': 'application/json',
  },
  body: JSON.stringify({
    prompt: '请介绍一下人工智能的发展历史',
    model: 'qwen',
    parameters: {
      temperature: 0.7
    }
  })
});

const reader = response.body.getReader();
const decoder = new TextDecoder();

while (true) {
  const { done, value } = await reader.read();
  if (done) break;
  
  const chunk = decoder.decode(value);
  const lines = chunk.split('\n');
  
  for (const line of lines) {
    if (line.startsWith('data: ')) {
      const data = JSON.parse(line.slice(6));
      if (data.chunk) {
        console.log(data.chunk);
      }
    }
  }
}
// ---- end: verbatim ----

console.error(`STATUS ${response.status}`);
