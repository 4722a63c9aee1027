// sfc serve: the browser side. Everything comes from the app's JSON API; text from the store is only ever
// inserted as text (textContent), never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { circuit: null, cy: null, resultCy: null, pinned: null, dashboards: new Map(), queries: [],
                requestSeq: 0, maxEffect: 1 };
window.sfcView = state; // for the browser tests and for poking around in the console

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, body) {
  document.body.dataset.loading = "1";
  try {
    const response = await fetch(path, body === undefined ? {} :
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  } finally {
    document.body.dataset.loading = "0";
  }
}

function showError(message, where = "#error") {
  const box = $(where);
  box.textContent = message || "";
  box.hidden = !message;
}

function fmt(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// --- pages ---------------------------------------------------------------------------------------------------
function route() {
  const hash = decodeURIComponent(location.hash.slice(2)); // after "#/"
  const [page, ...rest] = hash.split("/");
  const arg = rest.join("/");
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  for (const a of document.querySelectorAll("nav a")) a.classList.remove("active");
  showError("");
  if (page === "circuit" && arg) { $("#page-circuit").hidden = false; openCircuit(arg); }
  else if (page === "query") { $("#page-query").hidden = false; $("#nav-query").classList.add("active"); loadQueries(); }
  else if (page === "compare") { $("#page-compare").hidden = false; $("#nav-compare").classList.add("active"); compare(arg); }
  else { $("#page-circuits").hidden = false; $("#nav-circuits").classList.add("active"); loadCircuits(); }
}

async function loadCircuits() {
  try {
    const data = await api("/api/circuits");
    $("#store-name").textContent = data.store;
    const cols = ["id", "task", "model", "method", "n_nodes", "n_edges"];
    const head = $("#circuits-table thead"), body = $("#circuits-table tbody");
    head.replaceChildren(el("tr", {}, el("th", { text: "" }), ...cols.map((c) => el("th", { text: c }))));
    body.replaceChildren(...data.circuits.map((c) => el("tr", {},
      el("td", {}, el("input", { type: "checkbox", class: "pick", value: c.id })),
      el("td", {}, el("a", { href: "#/circuit/" + encodeURIComponent(c.id), text: c.id })),
      ...cols.slice(1).map((k) => el("td", { class: typeof c[k] === "number" ? "num" : "", text: fmt(c[k]) })))));
  } catch (e) { showError(e.message); }
}

// --- a circuit -----------------------------------------------------------------------------------------------
const BLUE = [0x21, 0x66, 0xac], RED = [0xb2, 0x18, 0x2b];
function shade(value, max) {
  const strength = Math.min(1, Math.abs(value) / (max || 1));
  const rgb = value >= 0 ? BLUE : RED;
  const t = 0.12 + 0.88 * strength;
  const mixed = rgb.map((c) => Math.round(255 + (c - 255) * t));
  return { color: `rgb(${mixed.join(",")})`, text: strength > 0.55 ? "#ffffff" : "#111111" };
}

function caption(n) {
  const where = n.position >= 0 ? `@${n.position}` : "";
  if (n.kind === "output") return "output" + where;
  if (n.kind === "error") return `ε ${n.row}${where}`;
  const head = `${n.row}/${n.latent}${where}`;
  const label = n.label || (n.top_tokens && n.top_tokens.length ? n.top_tokens.slice(0, 3).join(" ") : "");
  return label ? `${head}\n${label.length > 44 ? label.slice(0, 43) + "…" : label}` : head;
}

function circuitElements(data) {
  const max = data.max_effect || 1;
  const elements = [];
  const rows = new Map();
  for (const n of data.nodes) {
    const s = shade(n.effect, max);
    elements.push({ group: "nodes", data: { id: n.uid, kind: n.kind, caption: caption(n), color: s.color,
      textColor: s.text, feature: n.feature, node_id: n.node_id, effect: n.effect, label: n.label },
      position: { x: n.x, y: n.y } });
    const r = rows.get(n.row) || { y: n.y, minX: Infinity };
    r.minX = Math.min(r.minX, n.x);
    r.y = Math.max(r.y, n.y); // the band's lowest line
    rows.set(n.row, r);
  }
  for (const [name, r] of rows) {
    elements.push({ group: "nodes", data: { id: "row:" + name, kind: "row", caption: name, color: "#ffffff", textColor: "#555555" },
      position: { x: r.minX - 130, y: r.y }, selectable: false, grabbable: false });
  }
  const maxW = Math.max(1e-12, ...data.edges.map((e) => Math.abs(e.weight)));
  for (const e of data.edges) {
    const strength = Math.min(1, Math.abs(e.weight) / maxW);
    elements.push({ group: "edges", data: { id: e.src + "->" + e.dst, source: e.src, target: e.dst, weight: e.weight,
      width: 0.5 + 5 * strength, color: e.weight >= 0 ? "#2166ac" : "#b2182b", opacity: 0.25 + 0.7 * strength } });
  }
  return elements;
}

const CIRCUIT_STYLE = [
  { selector: "node", style: { "label": "data(caption)", "text-wrap": "wrap", "text-valign": "center",
    "font-size": 10, "background-color": "data(color)", "color": "data(textColor)", "width": 124, "height": 44,
    "text-max-width": "118px", "line-height": 1.1,
    "shape": "round-rectangle", "border-width": 1, "border-color": "#444" } },
  { selector: 'node[kind = "error"]', style: { "shape": "triangle", "border-style": "dashed", "border-width": 2,
    "width": 60, "height": 46, "font-size": 8, "text-valign": "bottom", "color": "#111" } },
  { selector: 'node[kind = "output"]', style: { "shape": "octagon", "background-color": "#fde68a",
    "border-color": "#92400e", "color": "#111", "width": 80 } },
  { selector: 'node[kind = "row"]', style: { "background-opacity": 0, "border-width": 0, "color": "#555",
    "font-size": 12, "events": "no" } },
  { selector: "node:selected", style: { "border-width": 3, "border-color": "#f59e0b" } },
  { selector: "edge", style: { "width": "data(width)", "line-color": "data(color)", "opacity": "data(opacity)",
    "curve-style": "bezier", "target-arrow-shape": "triangle", "target-arrow-color": "data(color)",
    "arrow-scale": 0.6 } },
];

async function openCircuit(id) {
  if (!state.circuit || state.circuit.id !== id) {
    state.circuit = { id };
    state.pinned = null;
    $("#node-threshold").value = 0;
    $("#threshold-value").textContent = "0";
  }
  await drawCircuit();
}

async function drawCircuit() {
  const id = state.circuit.id;
  const threshold = Number($("#node-threshold").value);
  const edgeThreshold = Number($("#edge-threshold").value) || 0;
  const seq = ++state.requestSeq;
  let data;
  try {
    data = await api(`/api/circuit?id=${encodeURIComponent(id)}&node_threshold=${threshold}&edge_threshold=${edgeThreshold}`);
  } catch (e) { showError(e.message); return; }
  if (seq !== state.requestSeq) return; // a later slider position has been asked for meanwhile
  state.maxEffect = data.max_effect || 1;
  const slider = $("#node-threshold");
  slider.max = String(state.maxEffect);
  slider.step = String(state.maxEffect / 200);
  const c = data.circuit;
  $("#circuit-title").textContent = `${c.task} · ${c.id} · ${c.method}`;
  $("#circuit-note").textContent = data.note || "";
  if (!state.cy) {
    state.cy = cytoscape({ container: $("#cy"), style: CIRCUIT_STYLE, wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4 });
    state.cy.on("mouseover", "node", (ev) => { if (!state.pinned) showNode(ev.target.data()); });
    state.cy.on("tap", "node", (ev) => { state.pinned = ev.target.id(); showNode(ev.target.data()); });
    state.cy.on("tap", (ev) => { if (ev.target === state.cy) state.pinned = null; });
  }
  const keepViewport = state.cy.nodes().length > 0 && state.cy.scratch("_circuit") === id;
  const pan = state.cy.pan(), zoom = state.cy.zoom();
  state.cy.elements().remove();
  state.cy.add(circuitElements(data));
  state.cy.scratch("_circuit", id);
  state.cy.layout({ name: "preset" }).run();
  if (keepViewport) { state.cy.zoom(zoom); state.cy.pan(pan); } else state.cy.fit(undefined, 30);
  const shown = data.nodes.length;
  const counter = $("#node-count");
  counter.textContent = `${shown} of ${data.total_nodes} nodes, ${data.edges.length} edges`;
  counter.dataset.nodes = String(shown);
  counter.dataset.edges = String(data.edges.length);
  counter.dataset.threshold = String(threshold);
}

async function showNode(node) {
  const panel = $("#panel");
  if (node.kind === "row") return;
  const head = el("h3", { text: node.feature || node.node_id });
  const effect = el("div", { text: `node ${node.node_id} · effect ${fmt(node.effect)}` });
  if (!node.feature) {
    panel.replaceChildren(head, effect, el("p", { class: "muted", text: node.kind === "error" ?
      "An SAE error node: what the dictionary does not reconstruct at this site." : "The metric the circuit explains." }));
    return;
  }
  panel.replaceChildren(head, effect, el("p", { class: "muted", text: "loading the dashboard…" }));
  let info = state.dashboards.get(node.feature);
  if (!info) {
    try { info = await api("/api/feature?id=" + encodeURIComponent(node.feature)); }
    catch (e) { panel.replaceChildren(head, effect, el("p", { class: "muted", text: e.message })); return; }
    state.dashboards.set(node.feature, info);
  }
  if ((state.pinned && state.pinned !== node.id && state.cy.getElementById(state.pinned).data("feature") !== node.feature)) return;
  panel.replaceChildren(head, effect, ...dashboardView(info));
  panel.dataset.feature = node.feature;
}

function dashboardView(info) {
  const parts = [];
  parts.push(el("div", { class: "label" }, info.label ? info.label : "(no label)",
    info.label_source ? el("span", { class: "source", text: `  ${info.label_source}` }) : ""));
  const dash = info.dashboard;
  if (!dash) {
    parts.push(el("p", { class: "muted", text: "No dashboard built: run `sfc features build`." }));
    return parts.concat(circuitsList(info));
  }
  parts.push(el("div", { text: `density ${(100 * info.density).toPrecision(3)}% · max ${fmt(info.max_activation)} · ` +
    `mean when active ${fmt(info.mean_activation)}` }));
  const counts = (dash.histogram && dash.histogram.counts) || [];
  const top = Math.max(1, ...counts);
  const first = counts.findIndex((c) => c > 0), last = counts.length - 1 - [...counts].reverse().findIndex((c) => c > 0);
  if (first >= 0) {
    parts.push(el("div", { class: "hist", title: "activation histogram (log-spaced bins)" },
      ...counts.slice(first, last + 1).map((c) => { const d = el("div"); d.style.height = `${Math.max(1, 40 * c / top)}px`; return d; })));
  }
  parts.push(el("div", { class: "logits" }, "promotes: ",
    ...(dash.top_logits || []).map(([t, v]) => el("span", { class: "up", text: `${t} ${v >= 0 ? "+" : ""}${v.toFixed(2)}` }))));
  parts.push(el("div", { class: "logits" }, "suppresses: ",
    ...(dash.bottom_logits || []).map(([t, v]) => el("span", { class: "down", text: `${t} ${v.toFixed(2)}` }))));
  parts.push(el("h4", { text: `Top activating contexts (${(dash.examples || []).length})` }));
  const peak = Math.max(1e-12, ...(dash.examples || []).map((ex) => ex.activation));
  for (const ex of dash.examples || []) {
    const line = el("div", { class: "context" }, el("span", { class: "act", text: ex.activation.toFixed(3) }));
    ex.tokens.forEach((tok, i) => {
      const a = ex.acts[i];
      const span = el("span", { class: "tok" + (i === ex.at ? " peak" : ""), text: tok, title: `${tok}: ${a}` });
      if (a > 0) span.style.background = `rgba(37, 99, 235, ${Math.min(1, a / peak) * 0.75})`;
      line.append(span, " ");
    });
    if (ex.behaviour) line.append(el("span", { class: "muted", text: ` (${ex.behaviour})` }));
    parts.push(line);
  }
  return parts.concat(circuitsList(info));
}

function circuitsList(info) {
  if (!info.circuits || !info.circuits.length) return [];
  return [el("h4", { text: "In circuits" }), el("ul", {}, ...info.circuits.map((c) =>
    el("li", {}, el("a", { href: "#/circuit/" + encodeURIComponent(c.circuit), text: c.task }), ` effect ${fmt(c.effect)}`)))];
}

// --- queries -------------------------------------------------------------------------------------------------
async function loadQueries() {
  if (state.queries.length) return;
  try { state.queries = (await api("/api/queries")).queries; } catch (e) { showError(e.message); return; }
  const select = $("#query-name");
  select.replaceChildren(...state.queries.map((q) => el("option", { value: q.name, text: q.name })));
  select.onchange = renderParams;
  renderParams();
}

function renderParams() {
  const q = state.queries.find((x) => x.name === $("#query-name").value);
  if (!q) return;
  $("#query-description").textContent = q.description;
  $("#query-params").replaceChildren(...q.params.map((p) => el("label", { title: p.help },
    `${p.name}${p.required ? " *" : ""} `,
    el("input", { name: p.name, "data-type": p.type, placeholder: p.required ? p.type : `${p.type} = ${JSON.stringify(p.default)}` }))));
}

async function runNamedQuery(ev) {
  ev.preventDefault();
  const params = {};
  for (const input of document.querySelectorAll("#query-params input")) if (input.value.trim()) params[input.name] = input.value;
  await showResult(() => api("/api/query", { name: $("#query-name").value, params }));
}

async function runCypher() {
  await showResult(() => api("/api/cypher", { statement: $("#cypher").value, params: {} }));
}

async function showResult(call) {
  showError("", "#query-error");
  const head = $("#result-table thead"), body = $("#result-table tbody");
  let data;
  try { data = await call(); }
  catch (e) {
    showError(e.message, "#query-error");
    head.replaceChildren(); body.replaceChildren(); $("#result-summary").textContent = ""; $("#result-cy").hidden = true;
    return;
  }
  $("#result-summary").textContent = `${data.rows.length} row${data.rows.length === 1 ? "" : "s"}`;
  head.replaceChildren(el("tr", {}, ...data.columns.map((c) => el("th", { text: c }))));
  body.replaceChildren(...data.rows.map((r) => el("tr", {}, ...r.map((v) => el("td", { class: typeof v === "number" ? "num" : "", text: fmt(v) })))));
  const box = $("#result-cy");
  if (data.graph && data.graph.nodes.length) {
    box.hidden = false;
    if (state.resultCy) state.resultCy.destroy();
    state.resultCy = cytoscape({ container: box, style: [
      { selector: "node", style: { "label": "data(label)", "font-size": 9, "text-wrap": "wrap", "background-color": "#93c5fd",
        "width": 18, "height": 18 } },
      { selector: 'node[kind = "error"], node[kind = "ErrorNode"]', style: { "shape": "triangle", "background-color": "#d1d5db" } },
      { selector: 'node[kind = "output"], node[kind = "Output"]', style: { "shape": "octagon", "background-color": "#fde68a" } },
      { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1.5, "line-color": "#9ca3af",
        "target-arrow-color": "#9ca3af" } }],
      elements: [
        ...data.graph.nodes.map((n) => ({ group: "nodes", data: { id: n.id, label: n.label, kind: n.kind } })),
        ...data.graph.edges.map((e, i) => ({ group: "edges", data: { id: "e" + i, source: e.src, target: e.dst } }))],
      layout: { name: "breadthfirst", directed: true, spacingFactor: 1.1 } });
  } else {
    box.hidden = true;
  }
}

// --- comparison ----------------------------------------------------------------------------------------------
async function compare(arg) {
  const ids = (arg || "").split(",").filter(Boolean);
  if (!ids.length) return;
  $("#compare-status").textContent = `building the report of ${ids.length} circuit(s)…`;
  try {
    const data = await api("/api/compare", { circuits: ids });
    $("#report").src = data.url;
    $("#compare-status").textContent = `report of ${ids.join(", ")}`;
  } catch (e) { $("#compare-status").textContent = ""; showError(e.message); }
}

// --- wiring --------------------------------------------------------------------------------------------------
let sliderTimer = null;
$("#node-threshold").addEventListener("input", () => {
  $("#threshold-value").textContent = Number($("#node-threshold").value).toPrecision(3);
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(drawCircuit, 120);
});
$("#edge-threshold").addEventListener("change", drawCircuit);
$("#fit").addEventListener("click", () => state.cy && state.cy.fit(undefined, 30));
$("#query-form").addEventListener("submit", runNamedQuery);
$("#run-cypher").addEventListener("click", runCypher);
$("#compare-selected").addEventListener("click", () => {
  const ids = [...document.querySelectorAll("input.pick:checked")].map((i) => i.value);
  if (!ids.length) { showError("tick at least one circuit to compare"); return; }
  location.hash = "#/compare/" + ids.map(encodeURIComponent).join(",");
});
window.addEventListener("hashchange", route);
route();
