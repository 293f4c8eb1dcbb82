// How the console writes figures: sizes, durations, shares, times. The APIs answer raw numbers
// (bytes, seconds, Unix or ISO times); only what a person reads is formatted, here.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** Bytes as "98.4 MB" (powers of 1000, as the hub and the download API write sizes). */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) { v /= 1000; i += 1; }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${UNITS[i]}`;
}

/** MiB (what the memory figures are in) as "631 MiB" or "1.2 GiB". */
export function mib(n) {
  if (n === null || n === undefined) return "–";
  return n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${Math.round(n)} MiB`;
}

/** Seconds as "3 d 4 h", "2 h 5 min", "4 min 10 s", "12.3 s" or "150 ms". */
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** A share in percent: "45.2 %". */
export function pct(v, digits = 1) {
  return v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)} %`;
}

/** A number with at most ``digits`` decimals, or "–". */
export function num(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toFixed(Number.isInteger(v) ? 0 : digits);
}

/** An ISO 8601 time (or Unix seconds) in the browser's local time. */
export function when(t) {
  if (t === null || t === undefined || t === "") return "–";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/** Tokens per second and time to first token of one answer: "41.2 tok/s · TTFT 120 ms". */
export function speed(timing) {
  if (!timing) return "";
  const parts = [];
  if (timing.tokens_per_second !== null && timing.tokens_per_second !== undefined) {
    parts.push(`${timing.tokens_per_second.toFixed(1)} tok/s`);
  }
  if (timing.ttft !== null && timing.ttft !== undefined) parts.push(`TTFT ${duration(timing.ttft)}`);
  return parts.join(" · ");
}
