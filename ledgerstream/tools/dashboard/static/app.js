// ledgerstream verifier dashboard: one EventSource keeps the page current (no polling).
"use strict";

const alerts = new Map();  // index -> alert

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const short = (h) => (h ? String(h).slice(0, 12) + "…" : "–");
const text = (id, value) => { document.getElementById(id).textContent = value; };

function when(micros) {
  if (!micros) return "–";
  return new Date(micros / 1000).toISOString().replace("T", " ").slice(0, 19);
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 60 ? `${Math.round(seconds)} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function entryLink(seq) {
  return seq === null || seq === undefined ? "–" : el("a", { href: `/entry/${seq}` }, String(seq));
}

function fill(id, rows, columns, empty) {
  const body = document.getElementById(id);
  body.replaceChildren();
  if (!rows.length) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: columns }, empty)));
    return;
  }
  for (const row of rows) body.append(row);
}

function renderHead(head) {
  text("head-size", head.size);
  text("head-seq", head.seq === null ? "–" : head.seq);
  text("head-hash", short(head.entry_hash));
  text("head-root", head.root ? `${short(head.root)} (size ${head.root_size})` : "–");
  text("rate-10s", head.throughput.per_second_10s);
  text("rate-1m", head.throughput.per_second_1m);
  const [source, current] = headSource(head);
  text("head-source", source);
  document.getElementById("head-source").classList.toggle("stale", !current);
}

// Where the head's answers come from, and whether they are current: an index that lags or
// whose follower stopped says so instead of passing for the ledger's present state.
function headSource(head) {
  const ix = head.index;
  if (head.source !== "index" || !ix) return ["live view of the topics", true];
  if (ix.caught_up) return ["from the index · caught up", true];
  if (ix.follower === "running") {
    return [`from the index · ${ix.records_behind === null ? "catching up" : `${ix.records_behind} records behind`}`, false];
  }
  const asOf = ix.updated_at ? ` · as of ${when(ix.updated_at * 1e6)}` : "";
  return [`from the index · ${ix.follower === "none" ? "no index follower" : "index follower stopped"}${asOf}`, false];
}

function renderCheckpoints(cps) {
  const latest = cps[0];
  text("cp-size", latest ? latest.tree_size : "–");
  text("cp-detail", latest
    ? `${when(latest.created_at)} · ${latest.anchors.length ? "timestamped" : "not timestamped yet"} · signature ${latest.signature}`
    : "none yet");
  fill("checkpoints", cps.map((cp) => el("tr", {},
    el("td", {}, String(cp.tree_size)), el("td", {}, when(cp.created_at)), el("td", {}, el("code", {}, short(cp.root_hash))),
    el("td", {}, el("span", { class: `badge ${cp.signature === "valid" ? "ok" : cp.signature === "invalid" ? "failed" : "unknown"}` }, cp.signature)),
    el("td", {}, el("span", { class: `badge ${cp.root === "match" ? "ok" : cp.root === "mismatch" ? "failed" : "pending"}` }, cp.root)),
    el("td", {}, cp.anchors.length ? `anchored (${cp.anchors.map((a) => a.tsa).join(", ")})` : "not anchored"),
  )), 6, "no checkpoint yet");
}

function checkpointText(cp) {
  if (cp === null || cp === undefined) return "–";
  if (typeof cp !== "object") return String(cp);
  return cp.tree_size === undefined ? short(JSON.stringify(cp)) : `size ${cp.tree_size}${cp.root_hash ? " · " + short(cp.root_hash) : ""}`;
}

function renderVerifiers(vs, signers) {
  fill("verifiers", vs.map((v) => el("tr", {},
    el("td", {}, v.id),
    el("td", {}, el("span", { class: `badge ${v.health === "healthy" ? "ok" : v.health === "stale" ? "unknown" : "failed"}` }, v.health)),
    el("td", {}, v.position === null ? "–" : String(v.position)), el("td", {}, v.lag === null ? "–" : String(v.lag)),
    el("td", {}, checkpointText(v.last_checkpoint)),
    el("td", {}, Object.entries(v.alerts || {}).map(([k, n]) => `${k}: ${n}`).join(", ") || "0"),
    el("td", {}, ago(v.age_seconds)),
  )), 7, "no verifier status yet");
  fill("signers", signers.map((s) => el("tr", {},
    el("td", {}, s.file), el("td", {}, el("span", { class: `badge ${s.stale ? "unknown" : s.role === "leader" ? "ok" : "pending"}` }, s.stale ? "stale" : s.role || "?")),
    el("td", {}, String(s.next_seq ?? "–")), el("td", {}, String(s.checkpoint_size ?? "–")),
    el("td", {}, String(s.tsa_backlog ?? "–")), el("td", {}, ago(s.age_seconds)),
  )), 6, "no signer status");
}

function renderAgents(agents) {
  fill("agents", agents.map((a) => el("tr", {},
    el("td", {}, a.agent_id), el("td", {}, String(a.count)), el("td", {}, entryLink(a.head_seq)),
    el("td", {}, el("code", {}, short(a.head_hash))), el("td", {}, a.last_action), el("td", {}, when(a.last_seen)),
    el("td", {}, el("span", { class: `badge ${a.chain_breaks ? "failed" : "ok"}` }, a.chain_breaks ? `${a.chain_breaks} breaks` : "intact")),
  )), 7, "no agents yet");
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, textContent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (textContent !== undefined) node.textContent = textContent;
  return node;
}

function renderGraph(graph) {
  const root = document.getElementById("graph");
  root.replaceChildren();
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
  defs.append(marker);
  root.append(defs);
  const n = graph.nodes.length;
  if (!n) {
    root.append(svg("text", { x: "260", y: "180", "text-anchor": "middle", class: "muted" }, "no agents yet"));
    return;
  }
  const pos = new Map();
  graph.nodes.forEach((name, i) => {
    const angle = (2 * Math.PI * i) / n - Math.PI / 2;
    pos.set(name, n === 1 ? [260, 180] : [260 + 170 * Math.cos(angle), 180 + 135 * Math.sin(angle)]);
  });
  for (const edge of graph.edges) {
    if (edge.caller === edge.callee) continue;
    const [x1, y1] = pos.get(edge.caller), [x2, y2] = pos.get(edge.callee);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1, r = 24;
    const sx = x1 + ((x2 - x1) * r) / len, sy = y1 + ((y2 - y1) * r) / len;
    const ex = x2 - ((x2 - x1) * r) / len, ey = y2 - ((y2 - y1) * r) / len;
    root.append(svg("line", { x1: sx, y1: sy, x2: ex, y2: ey, class: "edge", "marker-end": "url(#arrow)" }));
    root.append(svg("text", { x: (sx + ex) / 2, y: (sy + ey) / 2 - 4, "text-anchor": "middle", class: "edge-label" }, `${edge.calls}`));
  }
  for (const [name, [x, y]] of pos) {
    const g = svg("g", { class: "node" });
    g.append(svg("circle", { cx: x, cy: y, r: 22 }));
    g.append(svg("text", { x, y: y + 38, "text-anchor": "middle" }, name));
    root.append(g);
  }
  const list = document.getElementById("graph-edges");
  list.replaceChildren(...graph.recent.slice(-8).reverse().map((e) => el("li", {},
    `${e.caller} `, entryLink(e.caller_seq), " called ", `${e.callee} `, entryLink(e.callee_seq))));
}

function renderForeign(foreign) {
  document.getElementById("foreign-section").hidden = !foreign.length;
  fill("foreign", foreign.map((f) => el("tr", {},
    el("td", {}, String(f.offset)), el("td", {}, f.seq === null ? "–" : String(f.seq)), el("td", {}, f.reason))), 3, "");
}

function renderAlertSummary(summary) {
  text("alert-total", summary.total);
  // by_kind counts verified alerts only: a forged record (an "all_clear" too) changes none of it
  const kinds = Object.entries(summary.by_kind).map(([k, v]) => `${k}: ${v}`).join(" · ");
  text("alert-kinds", kinds || "none");
  document.getElementById("alert-forged").hidden = !summary.forged;
  text("alert-forged-count", `${summary.forged || 0} FORGED`);
  document.querySelector(".alerts-card").classList.toggle("raised", summary.total > 0);
}

function authenticityBadge(alert) {
  if (!alert.forged) return el("span", { class: "badge ok", title: "signed by a trusted verifier key" }, "verified");
  const label = alert.authenticity === "unsigned" ? "UNSIGNED" : "FORGED";
  return el("span", { class: "badge forged", title: `not from a trusted verifier: ${alert.authenticity_reason}` }, label);
}

function render(overview) {
  renderHead(overview.head);
  renderCheckpoints(overview.checkpoints);
  renderVerifiers(overview.verifiers, overview.signers);
  renderAgents(overview.agents);
  renderGraph(overview.graph);
  renderForeign(overview.foreign);
  renderAlertSummary(overview.alerts);
  const f = overview.follower || {};
  text("follower", `ledger: ${f.ledger || "?"} · alerts: ${f.alerts || "?"}`);
}

function addAlert(alert, fresh) {
  if (alerts.has(alert.index)) return;
  alerts.set(alert.index, alert);
  const body = document.getElementById("alerts");
  body.querySelector("tr.empty")?.remove();
  const seq = alert.seq_from === null ? "–" : alert.seq_to !== null && alert.seq_to !== alert.seq_from
    ? el("span", {}, entryLink(alert.seq_from), "–", entryLink(alert.seq_to)) : entryLink(alert.seq_from);
  const row = el("tr", { class: `alert ${fresh ? "fresh" : ""} ${alert.forged ? "forged" : ""}`, "data-kind": alert.kind,
                         "data-index": alert.index, "data-authenticity": alert.authenticity },
    el("td", {}, when(alert.time)), el("td", {}, el("span", { class: `badge sev-${alert.severity}` }, alert.severity)),
    el("td", { class: "kind" }, alert.kind), el("td", {}, seq), el("td", {}, alert.agent_id || "–"),
    el("td", {}, alert.verifier_id), el("td", {}, authenticityBadge(alert)), el("td", { class: "detail" }, alert.detail));
  const rows = [...body.children];
  const before = rows.find((r) => Number(r.dataset.index) < alert.index);
  body.insertBefore(row, before || null);
  while (body.children.length > 200) body.lastElementChild.remove();
  // alert.index counts every alert read so far: the card need not wait for the next snapshot
  const total = document.getElementById("alert-total");
  if (Number(total.textContent) < alert.index) total.textContent = alert.index;
  document.querySelector(".alerts-card").classList.add("raised");
}

function setLive(on) {
  const node = document.getElementById("live");
  node.textContent = on ? "live" : "reconnecting…";
  node.className = `live ${on ? "on" : "off"}`;
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("overview", (e) => render(JSON.parse(e.data)));
  events.addEventListener("alert", (e) => addAlert(JSON.parse(e.data), true));
  events.onopen = () => setLive(true);
  events.onerror = () => setLive(false);
}

async function loadAlerts() {
  const response = await fetch("/api/alerts");
  if (!response.ok) return;
  const data = await response.json();
  for (const alert of data.alerts) addAlert(alert, false);
}

function openEntry() {
  const value = document.getElementById("seq-input").value;
  if (/^\d+$/.test(value)) window.location.href = `/entry/${value}`;
}

document.addEventListener("DOMContentLoaded", () => {
  connect();  // first, so no alert falls between the list and the stream
  loadAlerts();
  document.getElementById("seq-go").addEventListener("click", openEntry);
  document.getElementById("seq-input").addEventListener("keydown", (e) => { if (e.key === "Enter") openEntry(); });
});
