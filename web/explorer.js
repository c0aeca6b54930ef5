// The API explorer: reads this server's OpenAPI document (/api/openapi.json)
// and renders every operation with a form for its parameters; "Send" calls
// the server from the browser and shows the answer and the curl command.
// No bundler, no CDN: this file is embedded in the binary.
"use strict";

const MAX_SHOWN = 200_000; // characters of an answer shown
const STREAM_MS = 3_000; // how long an event stream is read

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
};

/// A schema with `$ref`s into the document's components resolved.
function resolve(doc, schema) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 10; i++) {
    s = s.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), doc) || {};
  }
  return s;
}

/// The input for one parameter: a select for enums, a text box otherwise.
function input(doc, param) {
  const schema = resolve(doc, param.schema);
  const id = `p-${Math.random().toString(36).slice(2)}`;
  let field;
  if (Array.isArray(schema.enum)) {
    field = el("select", { id, name: param.name });
    field.append(el("option", { value: "", textContent: param.required ? "" : "(default)" }));
    for (const v of schema.enum) field.append(el("option", { value: v, textContent: v }));
  } else {
    const example = param.example ?? (schema.examples || [])[0]
      ?? (schema.oneOf ? resolve(doc, schema.oneOf[0]).examples?.[0] : undefined);
    field = el("input", { id, name: param.name, type: "text", placeholder: example ?? "" });
    if (param.required && example !== undefined) field.value = example;
  }
  field.dataset.in = param.in;
  const label = el("label", { htmlFor: id, textContent: param.name });
  if (param.required) label.append(el("span", { className: "req", textContent: " *" }));
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`min ${schema.minimum}`);
  if (schema.maximum !== undefined) bounds.push(`max ${schema.maximum}`);
  if (schema.default !== undefined) bounds.push(`default ${schema.default}`);
  const note = [param.description || "", bounds.length ? `(${bounds.join(", ")})` : ""].join(" ");
  return [label, field, el("span", { className: "pdoc", textContent: note.trim() })];
}

/// The request URL from a form's fields, or an error naming a missing one.
function target(path, form) {
  let url = path;
  const query = new URLSearchParams();
  const headers = {};
  for (const field of form.querySelectorAll("input, select")) {
    const value = field.value.trim();
    if (field.dataset.in === "path") {
      if (!value) throw new Error(`${field.name} is required`);
      url = url.replace(`{${field.name}}`, encodeURIComponent(value));
    } else if (value && field.dataset.in === "query") {
      query.set(field.name, value);
    } else if (value && field.dataset.in === "header") {
      headers[field.name] = value;
    }
  }
  const qs = query.toString();
  return { url: qs ? `${url}?${qs}` : url, headers };
}

/// Reads an answer: JSON pretty-printed, an event stream for a few seconds,
/// text as it is; at most MAX_SHOWN characters.
async function body(response) {
  const type = response.headers.get("content-type") || "";
  if (type.startsWith("text/event-stream")) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const stop = setTimeout(() => reader.cancel(), STREAM_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        if (text.length > MAX_SHOWN) { reader.cancel(); break; }
      }
    } catch (_) { /* cancelled */ }
    clearTimeout(stop);
    return `${text.slice(0, MAX_SHOWN)}\n… (stream read for ${STREAM_MS / 1000} s)`;
  }
  const text = await response.text();
  let shown = text;
  if (type.includes("json")) {
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as sent */ }
  }
  return shown.length > MAX_SHOWN ? `${shown.slice(0, MAX_SHOWN)}\n… (${shown.length} characters)` : shown;
}

function operation(doc, path, method, op) {
  const box = el("details", { className: "op" });
  box.dataset.path = path;
  box.append(el("summary", {},
    el("span", { className: "method", textContent: method.toUpperCase() }),
    el("code", { textContent: path }),
    el("span", { className: "summary", textContent: op.summary || "" })));
  if (op.description) box.append(el("p", { className: "doc", textContent: op.description }));
  const form = el("form");
  for (const param of op.parameters || []) form.append(...input(doc, param));
  const result = el("div", { className: "result", hidden: true });
  if (path === "/api/v1/ws") {
    box.append(el("p", { className: "muted", textContent: "A WebSocket: connect with a WebSocket client (the dashboard uses it)." }));
    return box;
  }
  const send = el("button", { type: "submit", textContent: "Send" });
  form.append(send);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    result.hidden = false;
    result.replaceChildren(el("span", { className: "muted", textContent: "…" }));
    let req;
    try { req = target(path, form); } catch (err) {
      result.replaceChildren(el("span", { className: "status bad", textContent: err.message }));
      return;
    }
    const started = performance.now();
    try {
      // The dashboard's key, when it asked for one (sessionStorage, this tab).
      const key = sessionStorage.getItem("streamforge-api-key");
      const headers = key ? { ...req.headers, authorization: `Bearer ${key}` } : req.headers;
      const response = await fetch(req.url, { headers });
      const text = await body(response);
      const ms = Math.round(performance.now() - started);
      const curl = ["curl", "-sS", ...Object.entries(req.headers).map(([k, v]) => `-H '${k}: ${v}'`),
        `'${location.origin}${req.url}'`].join(" ");
      result.replaceChildren(
        el("span", { className: `status ${response.ok ? "ok" : "bad"}`, textContent: `${response.status} ${response.statusText}` }),
        el("span", { className: "muted", textContent: `  ${ms} ms · ${response.headers.get("content-type") || ""}` }),
        el("pre", { className: "curl", textContent: curl }),
        el("pre", { className: "answer", textContent: text }));
    } catch (err) {
      result.replaceChildren(el("span", { className: "status bad", textContent: `request failed: ${err.message}` }));
    }
  });
  box.append(form, result);
  return box;
}

async function main() {
  let doc;
  try {
    const r = await fetch("/api/openapi.json", { headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(`/api/openapi.json answered ${r.status}`);
    doc = await r.json();
  } catch (err) {
    const box = $("#load-error");
    box.hidden = false;
    box.textContent = `Could not load the API document: ${err.message}`;
    return;
  }
  $("#version").textContent = `v${doc.info.version} · OpenAPI ${doc.openapi}`;
  $("#description").textContent = doc.info.description || "";
  const tags = (doc.tags || []).map((t) => t.name);
  const byTag = new Map(tags.map((t) => [t, []]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  const root = $("#operations");
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    const note = (doc.tags || []).find((t) => t.name === tag)?.description || "";
    root.append(el("h2", { textContent: tag }), el("p", { className: "tag-note", textContent: note }), ...ops);
  }
  window.streamforgeExplorer = { operations: root.querySelectorAll("details.op").length };
}

main();
