// The settings page (§3.1): sliders step through the caps the server offers, each move asks
// api/balance (priced locally by the server from the last published prices) and redraws
// the pie and the thick effective regions. The token travels in a same-site cookie.
"use strict";

const NAMES = ["space", "upload", "download"];
const LABEL = { space: "space", upload: "upload", download: "download" };
const state = { tables: {}, inflight: false, pending: false };

function fmtSize(n) {
  if (n === 0) return "0 GB";
  if (n >= 1e12) return `${+(n / 1e12).toFixed(2)} TB`;
  if (n >= 1e9) return `${+(n / 1e9).toFixed(1)} GB`;
  return `${+(n / 1e6).toFixed(0)} MB`;
}

function fmtRate(n) {
  if (n < 125000) return `${+(n / 1000).toFixed(1)} KB/s`;
  return `${+(n * 8 / 1e6).toFixed(1)} Mbit/s`;
}

function fmtCap(name, v) {
  if (!v) return name === "space" ? "no cap (the whole disk)" : "no cap";
  return name === "space" ? fmtSize(v) : fmtRate(v);
}

function capOf(name) {
  const el = document.getElementById(name);
  return state.tables[name][Number(el.value)];
}

function caps() {
  const out = {};
  for (const n of NAMES) out[n] = capOf(n);
  return out;
}

function showValue(name) {
  const text = fmtCap(name, capOf(name));
  document.getElementById(`${name}-value`).textContent = text;
  document.getElementById(name).setAttribute("aria-valuetext", text);
}

// Where a cap falls on its slider, as a fraction of the track (between two positions).
function position(name, value) {
  const t = state.tables[name];
  const last = t.length - 2; // the last finite value; t[t.length - 1] is 0 = no cap
  if (value >= t[last]) return 1;
  let i = 0;
  while (i < last && t[i + 1] <= value) i++;
  const frac = value <= t[i] ? 0 : (value - t[i]) / (t[i + 1] - t[i]);
  return (i + frac) / (t.length - 1);
}

function arc(from, to) {
  if (to - from >= 0.9999) return "M 0 -1 A 1 1 0 1 1 0 1 A 1 1 0 1 1 0 -1 Z";
  if (to - from <= 0) return "";
  const pt = (f) => [Math.sin(2 * Math.PI * f), -Math.cos(2 * Math.PI * f)];
  const [x0, y0] = pt(from), [x1, y1] = pt(to);
  const large = to - from > 0.5 ? 1 : 0;
  return `M 0 0 L ${x0} ${y0} A 1 1 0 ${large} 1 ${x1} ${y1} Z`;
}

function drawBalance(b, asked) {
  const used = b.in_use_bytes, free = b.available_bytes, total = used + free;
  const f = total > 0 ? Math.min(1, used / total) : 0;
  document.getElementById("slice-used").setAttribute("d", total ? arc(0, f) : "");
  document.getElementById("slice-free").setAttribute("d", total ? arc(f, 1) : "");
  document.getElementById("in-use").textContent = fmtSize(used);
  document.getElementById("available").textContent = fmtSize(free);
  const tot = document.getElementById("backup-total");
  tot.textContent = fmtSize(b.total_bytes);
  tot.dataset.bytes = String(b.total_bytes);
  document.getElementById("pie-text").textContent =
    `${fmtSize(used)} in use, ${fmtSize(free)} more available with these settings.`;
  for (const n of NAMES) {
    const region = b.regions[n];
    document.getElementById(`${n}-thick`).style.width = `${100 * position(n, region)}%`;
    const hint = b.counted[n] > region
      ? `Beyond ${fmtCap(n, region)} more ${LABEL[n]} adds no backup space: raise the others first.`
      : `Counts up to ${fmtCap(n, region)}.`;
    document.getElementById(`${n}-hint`).textContent = hint;
  }
  document.body.dataset.caps = NAMES.map((n) => asked[n]).join(",");
}

async function getJSON(url, options) {
  const r = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

async function refresh() {
  if (state.inflight) { state.pending = true; return; }
  state.inflight = true;
  document.body.dataset.busy = "1";
  try {
    do {
      state.pending = false;
      const asked = caps();
      const q = new URLSearchParams(Object.entries(asked).map(([k, v]) => [k, String(v)]));
      drawBalance(await getJSON(`api/balance?${q}`), asked);
    } while (state.pending);
  } finally {
    state.inflight = false;
    document.body.dataset.busy = "0";
  }
}

async function apply() {
  const msg = document.getElementById("apply-msg");
  msg.textContent = "Saving…";
  try {
    const asked = caps();
    const body = {};
    for (const n of NAMES) body[n] = String(asked[n]);
    const r = await getJSON("api/apply", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    msg.textContent = r.message;
  } catch (e) {
    msg.textContent = `Not saved: ${e.message}`;
  }
  await refresh();
  loadState();
}

function drawSizes(sizes) {
  const fig = document.getElementById("sizes-figure");
  if (!sizes.length) { fig.hidden = true; return; }
  const max = Math.max(...sizes.map((s) => s[1]), 1);
  const w = Math.min(30, 300 / sizes.length);
  const svg = document.getElementById("sizes");
  svg.replaceChildren(...sizes.map(([, size], i) => {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = Math.max(1, 58 * size / max);
    r.setAttribute("x", String(i * w + 1)); r.setAttribute("width", String(Math.max(1, w - 2)));
    r.setAttribute("y", String(60 - h)); r.setAttribute("height", String(h));
    return r;
  }));
  fig.hidden = false;
}

function paragraphs(id, lines) {
  document.getElementById(id).replaceChildren(...lines.map((t) => {
    const p = document.createElement("p"); p.textContent = t; return p;
  }));
}

async function loadState() {
  try {
    const s = await getJSON("api/state");
    const ul = document.getElementById("state-lines");
    ul.replaceChildren(...s.lines.map((t) => {
      const li = document.createElement("li"); li.textContent = t; return li;
    }));
    paragraphs("alerts", s.alerts);
    drawSizes(s.sizes);
  } catch (e) {
    paragraphs("alerts", [`Could not read this computer's state: ${e.message}`]);
  }
}

async function loadDetails(ev) {
  if (!ev.target.open) return;
  try {
    paragraphs("details-body", (await getJSON("api/details")).lines);
  } catch (e) {
    paragraphs("details-body", [`Could not read the account: ${e.message}`]);
  }
}

async function main() {
  const s = await getJSON("api/settings");
  state.tables = s.sliders;
  for (const n of NAMES) {
    const el = document.getElementById(n);
    const t = s.sliders[n];
    el.max = String(t.length - 1);
    el.value = String(t.indexOf(s.caps[n]));
    showValue(n);
    el.addEventListener("input", () => { showValue(n); refresh(); });
  }
  const note = document.getElementById("note");
  note.textContent = s.note; note.hidden = !s.note;
  drawBalance(s.balance, caps());
  document.body.dataset.busy = "0";
  document.getElementById("apply").addEventListener("click", apply);
  document.getElementById("details").addEventListener("toggle", loadDetails);
  loadState();
}

main().catch((e) => {
  const note = document.getElementById("note");
  note.textContent = `The settings could not be loaded: ${e.message}`;
  note.hidden = false;
});
