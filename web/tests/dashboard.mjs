// Drives the dashboard of a running StreamForge in headless Chromium:
//   node dashboard.mjs <base-url> <output-dir>
// Checks that the page loads with no script errors and no request leaving
// the machine, the chart draws the API's candles, a live tick updates a
// last price, and symbol and interval switch from the keyboard and the
// mouse. Saves a screenshot in <output-dir>. Exits non-zero saying which
// step failed.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node dashboard.mjs <base-url> <output-dir>");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const step = (what) => console.log(`ok: ${what}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
});
let failed = null;
const page = await browser.newPage({ viewport: { width: 1366, height: 800 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
const origin = new URL(base).origin;
const external = [];
await page.route("**/*", (route) => {
  const url = route.request().url();
  if (url.startsWith(origin) || url.startsWith(origin.replace("http", "ws"))) return route.continue();
  external.push(url);
  return route.abort();
});

// With API keys on, the dashboard asks for one (a prompt) and keeps it.
const key = process.env.STREAMFORGE_KEY || "";
let asked = 0;
page.on("dialog", (d) => { asked += 1; d.accept(key); });

const bars = () => page.evaluate(() => window.streamforge.series.data().length);
const selected = () => page.evaluate(() => window.streamforge.selected);

try {
  await page.goto(base, { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelectorAll("#symbols tbody tr").length >= 2, null, { timeout: 20000 });
  const symbols = await page.$$eval("#symbols tbody tr", (rows) => rows.map((r) => r.dataset.symbol));
  step(`page loaded with symbols ${symbols.join(", ")}`);
  if (key) {
    if (asked !== 1) throw new Error(`asked for the API key ${asked} times, not once`);
    step("asked once for the API key");
  }

  // The chart holds the candles the API returns for the selected symbol.
  await page.waitForFunction(() => window.streamforge.series && window.streamforge.series.data().length > 0, null, { timeout: 20000 });
  const first = await selected();
  const api = await page.evaluate(async (s) => {
    const from = new Date(Date.now() - 500 * 60 * 1000).toISOString();
    const k = sessionStorage.getItem("streamforge-api-key");
    const r = await fetch(`/api/v1/candles/${encodeURIComponent(s)}?interval=1m&from=${from}&limit=500`,
      { headers: k ? { authorization: `Bearer ${k}` } : {} });
    return (await r.json()).candles;
  }, first);
  const drawn = await page.evaluate(() => window.streamforge.series.data());
  if (drawn.length < 1 || drawn.length < api.length - 1) throw new Error(`chart has ${drawn.length} bars, API ${api.length}`);
  const firstApi = api[0], firstBar = drawn[0];
  if (Math.floor(Date.parse(firstApi.start) / 1000) !== firstBar.time || firstApi.open !== firstBar.open) {
    throw new Error(`first bar ${JSON.stringify(firstBar)} is not the API's first candle ${JSON.stringify(firstApi)}`);
  }
  const canvases = await page.$$eval("#chart canvas", (c) => c.length);
  if (!canvases) throw new Error("no chart canvas");
  step(`chart drew ${drawn.length} candles of ${first} (API: ${api.length})`);

  // A live tick updates the last price shown.
  const before = await page.evaluate((s) => ({ ...window.streamforge.symbols.get(s), row: undefined }), first);
  await page.waitForFunction(([s, t]) => {
    const x = window.streamforge.symbols.get(s);
    return x.lastTs > t && x.row.querySelector(".last").textContent !== "—";
  }, [first, before.lastTs], { timeout: 20000 });
  const after = await page.evaluate((s) => {
    const x = window.streamforge.symbols.get(s);
    return { last: x.last, lastTs: x.lastTs, text: x.row.querySelector(".last").textContent };
  }, first);
  const shown = Number(after.text.replace(/,/g, ""));
  if (Math.abs(shown - after.last) > 0.006) throw new Error(`row shows ${after.text}, last price ${after.last}`);
  step(`live update: ${first} last ${before.last} -> ${after.last} (${new Date(after.lastTs).toISOString()})`);

  // Keyboard: ArrowDown selects the next symbol, "3" picks 5m.
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction((s) => window.streamforge.selected !== s && document.getElementById("chart-symbol").textContent === window.streamforge.selected, first, { timeout: 10000 });
  const second = await selected();
  await page.waitForFunction(() => /candles$/.test(document.getElementById("chart-status").textContent), null, { timeout: 10000 });
  step(`ArrowDown switched ${first} -> ${second} (${await bars()} bars)`);
  await page.keyboard.press("3");
  await page.waitForFunction(() => document.querySelector('#intervals button[data-interval="5m"]').getAttribute("aria-pressed") === "true"
    && document.getElementById("chart-interval").textContent === "5m", null, { timeout: 10000 });
  await page.waitForFunction(() => /candles$/.test(document.getElementById("chart-status").textContent), null, { timeout: 10000 });
  const fiveMin = await page.evaluate(() => window.streamforge.series.data());
  if (fiveMin.some((b) => b.time % 300 !== 0)) throw new Error("5m bars are not on 5-minute boundaries");
  step(`key 3 switched to 5m (${fiveMin.length} bars)`);

  // Mouse: a symbol row and an interval button.
  await page.click(`#symbols tbody tr[data-symbol="${first}"]`);
  await page.click('#intervals button[data-interval="1s"]');
  await page.waitForFunction((s) => window.streamforge.selected === s && window.streamforge.interval === "1s"
    && /candles$/.test(document.getElementById("chart-status").textContent), first, { timeout: 10000 });
  step(`clicks switched back to ${first} at 1s (${await bars()} bars)`);

  // Every symbol row shows its completeness over the last hour, from the ledger.
  await page.waitForFunction(() => [...document.querySelectorAll("#symbols tbody tr")]
    .every((r) => /^\d+%$/.test(r.querySelector(".complete .pct").textContent)), null, { timeout: 15000 });
  const complete = await page.$$eval("#symbols tbody tr", (rows) => rows.map((r) => ({
    symbol: r.dataset.symbol,
    pct: r.querySelector(".complete .pct").textContent,
    now: r.querySelector(".complete .meter").getAttribute("aria-valuenow"),
    title: r.querySelector(".complete").title,
  })));
  for (const c of complete) {
    if (c.pct !== `${c.now}%` || !/minutes complete/.test(c.title)) throw new Error(`completeness of ${c.symbol}: ${JSON.stringify(c)}`);
  }
  step(`completeness: ${complete.map((c) => `${c.symbol} ${c.pct}`).join(", ")}`);

  // The pipeline panel shows the app's own figures.
  await page.waitForFunction(() => {
    const dd = [...document.querySelectorAll("#pipeline dd")].map((d) => d.textContent);
    return dd.length >= 6 && dd[2] !== "—";
  }, null, { timeout: 15000 });
  const panel = await page.$$eval("#pipeline div", (ds) => ds.map((d) => d.textContent.trim()).join(" | "));
  step(`pipeline panel: ${panel}`);
  await page.screenshot({ path: join(outDir, "dashboard.png"), fullPage: true });

  // The dashboard links the API explorer, which lists the document's
  // operations and calls one.
  await Promise.all([
    page.waitForURL(`${base}/api/explorer`, { timeout: 10000 }),
    page.click('footer a[href="/api/explorer"]'),
  ]);
  await page.waitForFunction(() => window.streamforgeExplorer && window.streamforgeExplorer.operations >= 10, null, { timeout: 15000 });
  const quote = page.locator('details.op[data-path="/api/v1/quotes/{symbol}/latest"]');
  await quote.locator("summary").click();
  await quote.locator('input[name="symbol"]').fill(first);
  await quote.locator("button").click();
  await quote.locator(".status.ok").waitFor({ timeout: 10000 });
  const answer = JSON.parse(await quote.locator("pre.answer").textContent());
  if (answer.symbol !== first) throw new Error(`explorer answered ${JSON.stringify(answer)} for ${first}`);
  step(`explorer: ${await page.evaluate(() => window.streamforgeExplorer.operations)} operations, latest ${first} at ${answer.price}`);

  if (external.length) throw new Error(`requests left the machine: ${external.join(", ")}`);
  if (problems.length) throw new Error(problems.join("; "));
} catch (e) {
  failed = e;
}
const shot = join(outDir, failed ? "dashboard.png" : "explorer.png");
await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
console.log(`screenshot: ${shot}`);
await browser.close();
if (failed) {
  console.error(`dashboard test failed: ${failed.message}`);
  process.exit(1);
}
