// StreamForge dashboard: symbol list, candlestick chart and pipeline panel.
// History comes from the REST API, live updates from the WebSocket
// (/api/v1/ws), pipeline figures from /api/v1/pipeline. No bundler:
// this file runs as it is, with the vendored Lightweight Charts global.
"use strict";

const INTERVALS = [
  ["1s", 1], ["1m", 60], ["5m", 300], ["15m", 900], ["1h", 3600], ["1d", 86400],
];
const HISTORY_BARS = 500;
const STALE_AFTER_S = 10;

const state = {
  symbols: new Map(), // symbol -> { last, open, volume, lastTs, row }
  selected: null,
  interval: "1m",
  ws: null,
  chart: null,
  series: null,
  markers: null,
  lastBarTime: 0,
  pipeline: null, // previous /api/v1/pipeline sample, for rates
};
window.streamforge = state; // for tests and the curious

const $ = (id) => document.getElementById(id);
const secondsOf = (iv) => INTERVALS.find(([name]) => name === iv)[1];
const fmt = (x, digits = 2) =>
  x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
const toTime = (iso) => Math.floor(Date.parse(iso) / 1000);

// ---- API key ---------------------------------------------------------------
// With [[api.keys]] configured the server answers 401 without one: the
// dashboard asks once and keeps the key for this tab only (sessionStorage).

const KEY_ITEM = "streamforge-api-key";
const apiKey = () => sessionStorage.getItem(KEY_ITEM);
const authHeaders = () => {
  const k = apiKey();
  return k ? { accept: "application/json", authorization: `Bearer ${k}` } : { accept: "application/json" };
};

let asking = null;
function askForKey(why) {
  // One prompt at a time, however many requests were refused.
  asking ??= Promise.resolve().then(() => {
    const k = window.prompt(`${why}\nAPI key (scopes read and stream; kept while this tab is open):`);
    if (k) sessionStorage.setItem(KEY_ITEM, k.trim());
    asking = null;
    return Boolean(k);
  });
  return asking;
}

async function authedFetch(path) {
  for (;;) {
    const r = await fetch(path, { headers: authHeaders() });
    if (r.status !== 401 && r.status !== 403) return r;
    const why = r.status === 401 ? "This StreamForge asks for an API key." : "This API key may not read here.";
    if (!(await askForKey(why))) return r;
  }
}

async function getJson(path) {
  const r = await authedFetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// ---- symbol list ---------------------------------------------------------

function row(symbol) {
  let s = state.symbols.get(symbol);
  if (s) return s;
  const tr = document.createElement("tr");
  tr.tabIndex = 0;
  tr.dataset.symbol = symbol;
  tr.setAttribute("aria-selected", "false");
  tr.innerHTML = `<td class="sym"></td><td class="last"></td><td class="chg"></td><td class="vol"></td><td class="fresh"></td>` +
    `<td class="complete"><span class="meter" role="meter" aria-valuemin="0" aria-valuemax="100"><span></span></span> <span class="pct">—</span></td>`;
  tr.querySelector(".sym").textContent = symbol;
  tr.addEventListener("click", () => select(symbol));
  tr.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(symbol); }
  });
  const rows = [...$("symbols").tBodies[0].rows];
  const before = rows.find((r) => r.dataset.symbol > symbol);
  $("symbols").tBodies[0].insertBefore(tr, before || null);
  $("symbols-empty").hidden = true;
  s = { last: null, open: null, volume: null, lastTs: null, row: tr };
  state.symbols.set(symbol, s);
  return s;
}

function paint(symbol) {
  const s = state.symbols.get(symbol);
  const tr = s.row;
  tr.querySelector(".last").textContent = fmt(s.last);
  const chg = tr.querySelector(".chg");
  if (s.last !== null && s.open) {
    const pct = ((s.last - s.open) / s.open) * 100;
    chg.textContent = `${pct >= 0 ? "+" : ""}${fmt(pct)}%`;
    chg.className = `chg ${pct >= 0 ? "up" : "down"}`;
  } else {
    chg.textContent = "—";
  }
  tr.querySelector(".vol").textContent = fmt(s.volume, 0);
  paintFreshness(s);
}

function paintFreshness(s) {
  const cell = s.row.querySelector(".fresh");
  if (!s.lastTs) { cell.textContent = "—"; return; }
  const age = Math.max(0, (Date.now() - s.lastTs) / 1000);
  cell.textContent = age < 60 ? `${age.toFixed(0)}s` : age < 3600 ? `${(age / 60).toFixed(0)}m` : `${(age / 3600).toFixed(0)}h`;
  cell.className = `fresh ${age > STALE_AFTER_S ? "stale" : ""}`;
  cell.title = `last trade ${new Date(s.lastTs).toISOString()}`;
}

/// The completeness ledger of the last hour: the share of complete minutes
/// as a bar, the counts behind it in the title.
async function loadCompleteness(symbol) {
  const s = state.symbols.get(symbol);
  if (!s) return;
  const from = new Date(Date.now() - 3600e3).toISOString();
  const page = await getJson(`/api/v1/completeness?symbol=${encodeURIComponent(symbol)}&from=${from}`);
  const t = page.totals;
  const pct = t.minutes ? Math.floor((100 * t.complete_minutes) / t.minutes) : 100;
  const cell = s.row.querySelector(".complete");
  const meter = cell.querySelector(".meter");
  meter.setAttribute("aria-valuenow", String(pct));
  meter.firstElementChild.style.width = `${pct}%`;
  meter.className = `meter ${pct < 100 ? "partial" : ""}`;
  cell.querySelector(".pct").textContent = `${pct}%`;
  cell.title = `last hour: ${t.complete_minutes} of ${t.minutes} minutes complete; ` +
    `${t.ids_missing} venue trade ids missing of ${t.ids_expected}; ${t.stored_backfill} trades from the venue's history`;
  s.completeness = t;
}

function loadAllCompleteness() {
  for (const symbol of state.symbols.keys()) {
    loadCompleteness(symbol).catch((e) => console.warn(e));
  }
}

/// A day candle (from the API or the stream) sets last, change and volume.
function applyDay(symbol, c) {
  const s = row(symbol);
  const lastTs = Date.parse(c.last_ts);
  if (s.lastTs && lastTs < s.lastTs) return;
  s.open = c.open;
  s.last = c.close;
  s.volume = c.volume;
  s.lastTs = lastTs;
  paint(symbol);
}

async function loadSymbols() {
  const { symbols } = await getJson("/api/v1/symbols");
  const today = new Date();
  today.setUTCHours(0, 0, 0, 0);
  await Promise.all(symbols.map(async (info) => {
    const s = row(info.symbol);
    s.last = info.last_price;
    s.lastTs = Date.parse(info.last_ts);
    try {
      const day = await getJson(`/api/v1/candles/${encodeURIComponent(info.symbol)}?interval=1d&from=${today.toISOString()}&limit=1`);
      if (day.candles.length) applyDay(info.symbol, day.candles[0]);
    } catch (e) { console.warn(e); }
    paint(info.symbol);
  }));
  if (!state.selected && symbols.length) select(symbols[0].symbol);
  loadAllCompleteness();
}

// ---- chart -----------------------------------------------------------------

function makeChart() {
  const el = $("chart");
  state.chart = LightweightCharts.createChart(el, {
    autoSize: true,
    layout: { background: { color: "#171e26" }, textColor: "#e6e9ee", attributionLogo: true },
    grid: { vertLines: { color: "#222b36" }, horzLines: { color: "#222b36" } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  state.series = state.chart.addSeries(LightweightCharts.CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  });
  state.markers = LightweightCharts.createSeriesMarkers(state.series, []);
  const group = $("intervals");
  INTERVALS.forEach(([name], i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = name;
    b.dataset.interval = name;
    b.title = `${name} candles (key ${i + 1})`;
    b.addEventListener("click", () => setInterval_(name));
    group.appendChild(b);
  });
}

/// A candle from the API or the stream as a chart bar; incomplete candles
/// (a feed gap overlaps them) are drawn grey.
function bar(c) {
  const b = { time: toTime(c.start), open: c.open, high: c.high, low: c.low, close: c.close };
  if (c.complete === false) Object.assign(b, { color: "#6b7480", wickColor: "#6b7480", borderColor: "#6b7480" });
  return b;
}

async function loadChart() {
  const { selected: symbol, interval } = state;
  if (!symbol) return;
  $("chart-symbol").textContent = symbol;
  $("chart-interval").textContent = interval;
  document.querySelectorAll("#intervals button").forEach((b) =>
    b.setAttribute("aria-pressed", String(b.dataset.interval === interval)));
  const from = new Date(Date.now() - HISTORY_BARS * secondsOf(interval) * 1000).toISOString();
  $("chart-status").textContent = "loading…";
  try {
    const page = await getJson(`/api/v1/candles/${encodeURIComponent(symbol)}?interval=${interval}&from=${from}&limit=${HISTORY_BARS}`);
    if (symbol !== state.selected || interval !== state.interval) return; // superseded
    const bars = page.candles.map(bar);
    state.series.setData(bars);
    state.lastBarTime = bars.length ? bars[bars.length - 1].time : 0;
    state.chart.timeScale().scrollToRealTime();
    showGaps(page.gaps);
    $("chart-status").textContent = `${page.count} candles`;
    $("chart").dataset.bars = String(bars.length);
  } catch (e) {
    $("chart-status").textContent = `cannot load candles: ${e.message}`;
  }
}

function showGaps(gaps) {
  state.markers.setMarkers(gaps.map((g) => ({
    time: toTime(g.from), position: "aboveBar", color: "#f5a623", shape: "arrowDown",
    text: `gap ${g.seconds.toFixed(1)}s (${g.reason})`,
  })).sort((a, b) => a.time - b.time));
  const el = $("gaps");
  el.textContent = gaps.length
    ? `Feed gaps in view: ${gaps.map((g) => `${g.from} → ${g.to} (${g.reason})`).join("; ")}`
    : "";
}

function liveCandle(c) {
  if (c.symbol === state.selected && c.interval === state.interval) {
    const b = bar(c);
    if (b.time >= state.lastBarTime) {
      state.series.update(b);
      state.lastBarTime = b.time;
    }
  }
  if (c.interval === "1d") applyDay(c.symbol, c);
}

// ---- selection and keys --------------------------------------------------------

function subscribeChart(op) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN && state.selected) {
    state.ws.send(JSON.stringify({ op, channel: "candles", symbols: [state.selected], interval: state.interval }));
  }
}

function select(symbol) {
  if (symbol === state.selected) return;
  subscribeChart("unsubscribe");
  state.selected = symbol;
  for (const [name, s] of state.symbols) s.row.setAttribute("aria-selected", String(name === symbol));
  subscribeChart("subscribe");
  loadChart();
}

function setInterval_(interval) {
  if (interval === state.interval) return;
  subscribeChart("unsubscribe");
  state.interval = interval;
  subscribeChart("subscribe");
  loadChart();
}

document.addEventListener("keydown", (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const idx = "123456".indexOf(e.key);
  if (idx >= 0) { setInterval_(INTERVALS[idx][0]); return; }
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    const names = [...$("symbols").tBodies[0].rows].map((r) => r.dataset.symbol);
    if (!names.length) return;
    e.preventDefault();
    const at = names.indexOf(state.selected);
    const next = names[Math.min(names.length - 1, Math.max(0, at + (e.key === "ArrowDown" ? 1 : -1)))];
    select(next);
    state.symbols.get(next).row.focus();
  }
});

// ---- live stream -----------------------------------------------------------

function connect() {
  const key = apiKey();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws${key ? `?api_key=${encodeURIComponent(key)}` : ""}`;
  const ws = new WebSocket(url);
  state.ws = ws;
  const badge = $("conn");
  ws.onopen = () => {
    badge.textContent = "live";
    badge.className = "badge ok";
    ws.send(JSON.stringify({ op: "subscribe", channel: "candles", symbols: ["*"], interval: "1d" }));
    subscribeChart("subscribe");
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "candle") liveCandle(msg.data);
    else if (msg.type === "slow_consumer") console.warn("disconnected:", msg.detail);
    else if (msg.type === "error") console.warn("request refused:", msg.error);
  };
  ws.onclose = () => {
    badge.textContent = "reconnecting…";
    badge.className = "badge bad";
    setTimeout(() => { connect(); loadSymbols().catch(console.warn); loadChart(); }, 2000);
  };
}

// ---- pipeline panel ----------------------------------------------------------

/// The p99 bound of the ingest→stored latencies observed between two
/// snapshots of `/api/v1/pipeline`, from the histogram's cumulative buckets.
function p99(now, before) {
  const a = now.ingest_to_stored, b = before.ingest_to_stored;
  const total = a.count - b.count;
  if (total <= 0) return null;
  for (let i = 0; i < a.buckets.length; i++) {
    const [le, n] = a.buckets[i];
    const earlier = b.buckets[i] ? b.buckets[i][1] : 0;
    if (n - earlier >= 0.99 * total) return le === null ? Infinity : le;
  }
  return Infinity;
}

const total = (byKey) => Object.values(byKey || {}).reduce((a, v) => a + v, 0);

async function pollPipeline() {
  let stats;
  try {
    const r = await fetch("/api/v1/pipeline", { headers: authHeaders() });
    if (!r.ok) return;
    stats = await r.json();
  } catch { return; }
  const now = { at: Date.now(), stats };
  const before = state.pipeline;
  state.pipeline = now;
  const dt = before ? (now.at - before.at) / 1000 : 0;
  const rate = (pick) => before && dt > 0 ? (pick(now.stats) - pick(before.stats)) / dt : null;
  const providerTicks = (s) => Object.values(s.providers).reduce((a, p) => a + p.ticks, 0);
  const lat = before ? p99(now.stats, before.stats) : null;
  const lagTopics = Object.keys(stats.consumer_lag);
  const figures = [
    ["Provider ticks/s", fmt(rate(providerTicks), 0)],
    ["Published ticks/s", fmt(rate((s) => total(s.published)), 0)],
    ["Stored ticks/s", fmt(rate((s) => s.store.rows_written), 0)],
    ["Consumer lag", lagTopics.length ? fmt(total(stats.consumer_lag), 0) : "—"],
    ["Ingest→stored p99", lat === null ? "—" : lat === Infinity ? "> max bucket" : `≤ ${fmt(lat * 1000, 0)} ms`],
    ["DLQ messages", fmt(total(stats.dead_letters), 0)],
    ["Stream clients", fmt(stats.stream_clients, 0)],
  ];
  const dl = $("pipeline");
  dl.replaceChildren(...figures.map(([k, v]) => {
    const d = document.createElement("div");
    const dt_ = document.createElement("dt");
    const dd = document.createElement("dd");
    dt_.textContent = k;
    dd.textContent = v;
    d.append(dt_, dd);
    return d;
  }));
}

// ---- start ---------------------------------------------------------------------

async function start() {
  makeChart();
  // The open index says what a caller without a key may do: ask for a key
  // first when that is not enough to read, so no request is refused.
  if (!apiKey()) {
    try {
      const index = await (await fetch("/api", { headers: { accept: "application/json" } })).json();
      if (!(index.scopes || []).includes("read")) await askForKey("This StreamForge asks for an API key.");
    } catch { /* the queries below say what is wrong */ }
  }
  loadSymbols().catch((e) => { $("symbols-empty").textContent = `cannot load symbols: ${e.message}`; });
  connect();
  pollPipeline();
  window.setInterval(pollPipeline, 2000);
  window.setInterval(() => state.symbols.forEach(paintFreshness), 1000);
  window.setInterval(loadAllCompleteness, 30000);
}

start();
