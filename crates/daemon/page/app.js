"use strict";
// One page, no external resources: the daemon may run where the browser has no internet.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
  "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#8cd17d", "#499894"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function bytes(b) {
  if (b === null || b === undefined) return "–";
  const neg = b < 0; let v = Math.abs(b);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (neg ? "−" : "") + (i ? v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) : v) + " " + units[i];
}
// A series key as the CLI prints it: name{vm="x"} or name{process="y"}.
function keyText(k) {
  if (k.vm) return `${k.name}{vm="${k.vm}"}`;
  if (k.process) return `${k.name}{process="${k.process}"}`;
  return k.name;
}
async function get(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(url + ": " + (body.error || r.status));
  return body;
}

// A chart of series [{label, points: [[t, v]...]}], stacked (areas) or not (lines).
function chart(container, series, stacked) {
  const W = 540, H = 200, L = 64, B = 22, T = 6, R = 8;
  container.textContent = "";
  const pts = series.flatMap(s => s.points);
  if (!pts.length) { container.append(el("div", {class: "muted"}, "no history yet")); return; }
  const t0 = Math.min(...pts.map(p => p[0])), t1 = Math.max(...pts.map(p => p[0]));
  const times = [...new Set(pts.map(p => p[0]))].sort((a, b) => a - b);
  const at = series.map(s => new Map(s.points));
  let stack = null, ymax = 0;
  if (stacked) {
    stack = times.map(t => { let acc = 0; return at.map(m => (acc += (m.get(t) || 0))); });
    ymax = Math.max(...stack.map(r => r[r.length - 1]));
  } else {
    ymax = Math.max(...pts.map(p => p[1]));
  }
  ymax = ymax > 0 ? ymax * 1.05 : 1;
  const x = t => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - L - R);
  const y = v => T + (1 - v / ymax) * (H - T - B);
  const s = svg("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img"});
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    s.append(svg("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eee"}));
    const tx = svg("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#777"});
    tx.textContent = bytes(v); s.append(tx);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const tx = svg("text", {x: x(t), y: H - 6, "text-anchor": anchor, "font-size": 10, fill: "#777"});
    tx.textContent = new Date(t).toLocaleString(); s.append(tx);
  }
  series.forEach((ser, i) => {
    const color = PALETTE[i % PALETTE.length];
    if (stacked) {
      const top = times.map((t, k) => [x(t), y(stack[k][i])]);
      const bot = times.map((t, k) => [x(t), y(i ? stack[k][i - 1] : 0)]).reverse();
      const d = "M" + top.concat(bot).map(p => p.join(",")).join("L") + "Z";
      s.append(svg("path", {d, fill: color, "fill-opacity": 0.85, stroke: "none", "data-series": ser.label}));
    } else {
      const d = "M" + ser.points.map(p => x(p[0]) + "," + y(p[1])).join("L");
      s.append(svg("path", {d, fill: "none", stroke: color, "stroke-width": 1.6, "data-series": ser.label}));
    }
  });
  container.append(s);
  const legend = el("div", {class: "legend"});
  series.forEach((ser, i) => {
    const last = ser.points.length ? ser.points[ser.points.length - 1][1] : null;
    const span = el("span");
    span.append(el("i", {style: `background:${PALETTE[i % PALETTE.length]}`}), ser.label + " " + bytes(last));
    legend.append(span);
  });
  container.append(legend);
}

function table(container, head, rows) {
  container.textContent = "";
  if (!rows.length) { container.append(el("div", {class: "muted"}, "none")); return; }
  const t = el("table"), tr = el("tr");
  head.forEach(h => tr.append(el("th", {}, h)));
  t.append(tr);
  for (const r of rows) {
    const row = el("tr");
    r.forEach(c => {
      const td = el("td", typeof c === "object" && c !== null ? c.attrs : {}, typeof c === "object" && c !== null ? c.text : c);
      row.append(td);
    });
    t.append(row);
  }
  container.append(t);
}

// "explained": the residual is within what named kernel behaviour accounts for, not a fault.
const VERDICT_CLASS = {holds: "ok", explained: "ok", not_applicable: "muted", broken: "bad"};

// One refresh at a time: a slow one overlapping the next (timer or a new "history" choice)
// would clear and refill the VM boxes twice, showing each VM twice.
let refreshing = null, again = false;
function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = draw().finally(() => {
    refreshing = null;
    if (again) { again = false; refresh(); }
  });
  return refreshing;
}

async function draw() {
  const since = document.getElementById("since").value;
  const err = document.getElementById("error");
  err.textContent = "";
  try {
    const latest = await get("/api/v1/latest");
    document.getElementById("stamp").textContent =
      `latest sample ${new Date(latest.taken_at_unix_ms).toLocaleString()} · ${latest.vms.length} VM(s)`;

    const host = await get(`/api/v1/series?since=${since}&field=host.lru.`);
    chart(document.getElementById("host-chart"),
      host.series.map(s => ({label: s.key.name.replace("host.lru.", ""), points: s.points})), true);

    const vmBox = document.getElementById("vm-charts");
    vmBox.textContent = "";
    for (const vm of latest.vms) {
      const box = el("div", {class: "vm", "data-vm": vm.name});
      box.append(el("h3", {}, vm.name));
      const c = el("div", {class: "chart"});
      box.append(c);
      vmBox.append(box);
      const q = `/api/v1/series?since=${since}&vm=${encodeURIComponent(vm.name)}` +
        "&field=vm.balloon_actual,vm.guest_used,vm.guest_cache,vm.qemu_rss";
      const s = await get(q);
      chart(c, s.series.map(x => ({label: x.key.name.replace("vm.", ""), points: x.points})), false);
    }
    if (!latest.vms.length) vmBox.append(el("div", {class: "muted"}, "no VMs in the latest sample"));

    table(document.getElementById("diagnoses"), ["VM", "kind", "what it means"],
      latest.vms.flatMap(v => v.diagnosis.map(f => [v.name, f.kind, f.text])));
    table(document.getElementById("identities"), ["identity", "left", "right", "residual", "verdict"],
      latest.accounting.identities.map(i => [
        i.name, `${i.left} = ${bytes(i.left_bytes)}`, `${i.right} = ${bytes(i.right_bytes)}`,
        {text: bytes(i.residual_bytes), attrs: {class: "num"}},
        {text: String(i.verdict).replace("_", " "), attrs: {class: VERDICT_CLASS[i.verdict] || "bad"}}]));
    // PSS and vmallocinfo are read on a slower cadence: those identities as last judged.
    const c = latest.carried || {};
    document.getElementById("carried").textContent = (c.identities || []).length ?
      `${c.identities.join(", ")}: as judged on the sample of ${c.age_s} s before (the last that read PSS and vmallocinfo)` : "";

    const leaks = await get(`/api/v1/leaks?since=${since === "1h" ? "6h" : since}`);
    table(document.getElementById("leaks"), ["what", "kind", "growth", "per hour", "fit r²", "look next"],
      leaks.leaks.map(l => [keyText(l.what), l.kind + (l.shape ? " (" + l.shape + ")" : ""), {text: bytes(l.growth_bytes), attrs: {class: "num"}},
        {text: bytes(l.slope_bytes_per_hour), attrs: {class: "num"}},
        {text: Number(l.r2).toFixed(2), attrs: {class: "num"}}, l.look_next]));
  } catch (e) {
    err.textContent = String(e);
  }
}
document.getElementById("since").addEventListener("change", refresh);
refresh();
setInterval(refresh, 30000);
