// Seed 001's JavaScript client (streamGenerate), run unchanged under Node 20.
//
// usage: node spec_stream.mjs <base-url> <prompt>
//
// The document calls fetch('/api/v1/generate/stream'): a URL relative to the
// page, as in a browser. Node has no page, so fetch is wrapped to resolve
// relative URLs against <base-url>, as the browser would against the page that
// llmd serves; the function itself is the document's text, untouched. Each
// console.log(data.token) line goes to stdout; a JSON.parse failure (a read()
// that is not exactly one event) rejects and exits with status 1.

const BASE = process.argv[2];
const PROMPT = process.argv[3] ?? "请写一首关于春天的诗";
const nodeFetch = globalThis.fetch;
globalThis.fetch = (url, init) => nodeFetch(new URL(url, BASE), init);

// --- verbatim from shared/seeds/001 ("JavaScript客户端示例") ---
async function streamGenerate(prompt) {
    const response = await fetch('/api/v1/generate/stream', {
        method: 'POST',
        headers: {
            'Content-Type': 'application/json',
            'Accept': 'text/event-stream'
        },
        body: JSON.stringify({ prompt })
    });
    
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    
    while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        
        const chunk = decoder.decode(value);
        const data = JSON.parse(chunk.replace('data: ', ''));
        console.log(data.token);
    }
}
// --- end of the document's code ---

await streamGenerate(PROMPT);
console.error("STREAM-END");
