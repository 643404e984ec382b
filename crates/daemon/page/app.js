"use strict";
// memwarden's page: everything from the daemon's JSON API, charts by the vendored uPlot. No
// external resources: the daemon may run where the browser has no internet.

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
  "#ff9da7", "#86bcb6", "#d37295", "#8cd17d", "#499894", "#bab0ac"];
const X_COLOR = "#e15759";
// The LRU decomposition's terms: the lists in blues, free in grey, the kernel's in warm colours.
const LRU_COLOR = {MemFree: "#c7c7c7", Inactive: "#a0cbe8", Active: "#4e79a7", Unevictable: "#9c755f",
  Slab: "#f28e2b", vmalloc: "#59a14f", PageTables: "#b07aa1", SecPageTables: "#d4a6c8",
  KernelStack: "#edc948", Percpu: "#ff9da7", "per-CPU free pages": "#8cd17d", Bounce: "#bab0ac",
  Zswap: "#86bcb6"};
const MARK = {shrink: "#f28e2b", grow: "#59a14f", harm: "#e15759"};
const RANGES = ["1h", "6h", "24h", "7d"];
const MAX_RANGE_S = 7 * 24 * 3600;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function bytes(b) {
  if (b === null || b === undefined || Number.isNaN(b)) return "–";
  const neg = b < 0; let v = Math.abs(b);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (neg ? "−" : "") + (i ? v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) : v) + " " + units[i];
}
function pct(v) { return v === null || v === undefined ? "–" : v.toFixed(2) + " %"; }
function when(ms) { return new Date(ms).toLocaleString(); }
// A series key as the CLI prints it: name{vm="x"} or name{process="y"}.
function keyText(k) {
  if (k.vm) return `${k.name}{vm="${k.vm}"}`;
  if (k.process) return `${k.name}{process="${k.process}"}`;
  return k.name;
}
// A decomposition label as its series name part (series.rs `slug`).
function slug(label) { return label.split(" (")[0].trim().replace(/[ ,]/g, "_"); }
async function get(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(url + ": " + (body.error || r.status));
  return body;
}

// ---- The window shown, kept in the URL's hash: #range=6h, or #from=S&to=S (unix seconds).

function readWindow() {
  const p = new URLSearchParams(location.hash.slice(1));
  const from = Number(p.get("from")), to = Number(p.get("to"));
  if (from > 0 && to > from) return {from, to};
  const range = RANGES.includes(p.get("range")) ? p.get("range") : "6h";
  return {range};
}
function writeWindow(w) {
  const h = w.from ? `#from=${Math.floor(w.from)}&to=${Math.ceil(w.to)}` : `#range=${w.range}`;
  if (location.hash !== h) history.replaceState(null, "", h);
  showWindow(w);
}
function showWindow(w) {
  for (const a of document.querySelectorAll("#ranges a")) {
    a.classList.toggle("on", !w.from && a.dataset.range === w.range);
  }
  document.getElementById("window").textContent =
    w.from ? `${when(w.from * 1000)} – ${when(w.to * 1000)}` : "";
}
// What `since` to ask the API for.
function since(w) {
  if (!w.from) return w.range;
  const s = Math.ceil(Date.now() / 1000 - w.from) + 60;
  return Math.min(Math.max(s, 60), MAX_RANGE_S) + "s";
}

// ---- Charts

let win = readWindow();
let charts = [];        // every uPlot on the page, for the shared zoom and resizing

function colors() {
  const cs = getComputedStyle(document.documentElement);
  return {fg: cs.getPropertyValue("--fg").trim(), grid: cs.getPropertyValue("--grid").trim(),
    muted: cs.getPropertyValue("--muted").trim()};
}
function chartSize(container) {
  const w = Math.max(container.clientWidth, 280);
  return {width: w, height: w < 600 ? 180 : 240};
}

// Series [{label, points: [[ms, v]...], color?, show?}] on one time axis (uPlot wants seconds
// and one row of values per series, null where a series has no point).
function align(series) {
  const times = [...new Set(series.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const rows = series.map(s => {
    const row = new Array(times.length).fill(null);
    for (const [t, v] of s.points) row[index.get(t)] = v;
    return row;
  });
  return [times.map(t => t / 1000), ...rows];
}
const nonZero = s => s.points.some(p => p[1] !== 0 && p[1] !== null);

// Applies a zoom to every chart (`null`: none, each shows its whole data).
function zoomAll(min, max) {
  for (const u of charts) {
    if (min === null) {
      const xs = u.data[0];
      if (xs.length) u.setScale("x", {min: xs[0], max: xs[xs.length - 1]});
    } else {
      u.setScale("x", {min, max});
    }
  }
}

// A uPlot chart in `container`: `fmt` formats values (axis and legend); `stacked` stacks the
// series (first at the bottom) as opaque areas; `marks` draws vertical markers; `onCursor(u)`
// runs when the pointer moves.
function chart(container, series, {fmt = bytes, stacked = false, empty = "no history yet",
  marks = [], onCursor = null} = {}) {
  container.textContent = "";
  container.dataset.marks = "0";
  if (!series.length || !series.some(s => s.points.length)) {
    container.append(el("div", {class: "muted"}, empty));
    return null;
  }
  const c = colors();
  const data = align(series);
  const raw = data.slice(1);
  const opts = {
    ...chartSize(container),
    cursor: {sync: {key: "memwarden", setSeries: false}, drag: {x: true, y: false, setScale: false}},
    legend: {live: true},
    scales: {x: {time: true}},
    axes: [
      {stroke: c.muted, grid: {stroke: c.grid}, ticks: {stroke: c.grid}},
      {stroke: c.muted, grid: {stroke: c.grid}, ticks: {stroke: c.grid}, size: 74,
        values: (u, splits) => splits.map(fmt)},
    ],
    // Off the chart, the legend shows the latest values.
    series: [{value: (u, v) => when(1000 * (v ?? data[0][data[0].length - 1]))}],
    hooks: {
      setSelect: [u => {
        if (u.select.width < 3) return;
        const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
        win = {from: min, to: max};
        writeWindow(win);
        zoomAll(min, max);
      }],
      ready: [u => u.over.addEventListener("dblclick", () => leaveZoom())],
    },
  };
  // Stacked: series drawn top of the stack first, each filled to the axis, so the next one
  // down covers all but its own band; the legend and the pointer show each term's own value.
  const order = stacked ? raw.map((_, i) => i).reverse() : raw.map((_, i) => i);
  const plotted = order.map(i => raw[i]);
  for (const i of order) {
    const s = series[i];
    const color = s.color || PALETTE[i % PALETTE.length];
    opts.series.push({
      label: s.label, stroke: color, width: stacked ? 1 : 1.5, show: s.show !== false,
      fill: stacked ? color + "d9" : undefined,
      value: (u, v, si, di) => fmt(raw[i][di ?? raw[i].length - 1]),
      points: {show: false},
    });
  }
  const stackData = u => {
    // Cumulative sums over the shown series, bottom up; a hidden one adds nothing.
    const acc = new Array(data[0].length).fill(0);
    const out = new Array(raw.length);
    for (let k = raw.length - 1; k >= 0; k--) {   // plotted[k] is order[k]; bottom is last
      const i = order[k];
      const shown = !u || u.series[k + 1].show;
      out[k] = raw[i].map((v, j) => (acc[j] += shown && v > 0 ? v : 0));
    }
    return [data[0], ...out];
  };
  if (stacked) {
    opts.hooks.setSeries = [(u, si, o) => { if (o && "show" in o) u.setData(stackData(u)); }];
  }
  if (marks.length) opts.hooks.draw = [u => drawMarks(u, marks, container)];
  if (onCursor) opts.hooks.setCursor = [onCursor];
  const u = new uPlot(opts, stacked ? stackData(null) : [data[0], ...plotted], container);
  if (stacked) u.setData(stackData(u));
  if (win.from) u.setScale("x", {min: win.from, max: win.to});
  charts.push(u);
  return u;
}

// Vertical lines for the balloon controller's actions and harm, in the chart's window; the
// count drawn is kept on the container (data-marks).
function drawMarks(u, marks, container) {
  const ctx = u.ctx, {top, height} = u.bbox;
  const [min, max] = [u.scales.x.min, u.scales.x.max];
  let n = 0;
  ctx.save();
  ctx.lineWidth = 2 * devicePixelRatio;
  for (const m of marks) {
    const t = m.at_unix_ms / 1000;
    if (t < min || t > max) continue;
    const x = Math.round(u.valToPos(t, "x", true));
    ctx.strokeStyle = MARK[m.kind] || X_COLOR;
    ctx.setLineDash(m.outcome === "planned" ? [4 * devicePixelRatio, 3 * devicePixelRatio] : []);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.beginPath(); ctx.moveTo(x - 5 * devicePixelRatio, top); ctx.lineTo(x + 5 * devicePixelRatio, top);
    ctx.lineTo(x, top + 8 * devicePixelRatio); ctx.fill();
    n++;
  }
  ctx.restore();
  container.dataset.marks = String(n);
}

function leaveZoom() {
  const p = new URLSearchParams(location.hash.slice(1));
  win = {range: RANGES.includes(p.get("range")) ? p.get("range") : (win.range || "6h")};
  writeWindow(win);
  zoomAll(null, null);
}

// ---- Tables

// A table; a cell is text or {text, attrs, sort}. `sortable`: clicking a header sorts by it
// (by `sort` when given, else the text), again to reverse.
function table(container, head, rows, sortable, none = "none") {
  container.textContent = "";
  if (!rows.length) { container.append(el("div", {class: "muted"}, none)); return; }
  const t = el("table"), thead = el("thead"), tr = el("tr"), tbody = el("tbody");
  const cell = c => (typeof c === "object" && c !== null ? c : {text: c});
  const fill = list => {
    tbody.textContent = "";
    for (const r of list) {
      const row = el("tr");
      r.forEach(c => row.append(el("td", cell(c).attrs || {}, cell(c).text)));
      tbody.append(row);
    }
  };
  head.forEach((h, i) => {
    const th = el("th", sortable ? {class: "sort", "data-col": String(i)} : {}, h);
    if (sortable) {
      th.addEventListener("click", () => {
        const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        thead.querySelectorAll("th").forEach(x => x.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        const key = c => { const x = cell(c); return x.sort !== undefined ? x.sort : x.text; };
        const sorted = [...rows].sort((a, b) => {
          const [x, y] = [key(a[i]), key(b[i])];
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
        });
        fill(sorted);
      });
    }
    tr.append(th);
  });
  thead.append(tr);
  fill(rows);
  t.append(thead, tbody);
  container.append(t);
}
const num = b => ({text: bytes(b), attrs: {class: "num"}, sort: b === undefined ? null : b});

// ---- The VMs and the controller

function vmState(v) {
  if (v.read && v.read.status !== "ok") return v.read.status;
  if (typeof v.state === "string") return v.state === "shutoff" ? "shut off" : v.state;
  return v.state && v.state.other ? v.state.other : "unknown";
}
function onOff(x) { return x === true ? "on" : x === false ? "off" : "?"; }

// What the controller's last cycle decided for each VM: name -> {short, long} sentences.
function decisions(balloon) {
  const out = new Map();
  const c = balloon.last_cycle;
  if (!balloon.enabled || !c) return out;
  const dry = c.dry_run ? " (dry run: planned only)" : "";
  for (const a of c.plan.actions || []) {
    const done = (c.applied || []).find(x => x.action.name === a.name);
    const how = done ? ` (${done.outcome}${done.error ? ": " + done.error : ""})` : dry;
    const what = `${a.direction} ${bytes(a.from_bytes)} → ${bytes(a.target_bytes)}`;
    out.set(a.name, {short: what + how, long: `${what}${how}: ${a.reason}`});
  }
  for (const s of c.plan.skipped || []) {
    const text = `left alone: ${s.reason}`;
    if (!out.has(s.name)) out.set(s.name, {short: text, long: text});
  }
  return out;
}

function controllerLine(balloon) {
  const box = document.getElementById("controller");
  if (!balloon.enabled) {
    box.textContent = "Balloon controller: off ([balloon] enabled = false): no plan, no markers.";
    return;
  }
  const c = balloon.last_cycle;
  const n = (balloon.actions_total || []).reduce((a, x) => a + x.count, 0);
  box.textContent = `Balloon controller: on${balloon.dry_run ? ", dry run (plans, changes nothing)" : ""}` +
    (c ? ` · last cycle ${when(c.plan.taken_at_unix_ms)}: ${(c.plan.actions || []).length} action(s), ` +
      `${(c.plan.skipped || []).length} VM(s) left alone` : " · no cycle yet") +
    ` · actions applied since start: ${n}. Markers: shrink, grow (dashed: planned only), harm.`;
}

function vmTable(latest, plan) {
  table(document.getElementById("vm-table"),
    ["VM", "state", "actual", "guest used", "cache", "free", "usable", "QEMU RSS", "host idle",
      "FPR/DOO", "diagnosis", "controller"],
    latest.vms.map(v => {
      const f = v.figures || {};
      const diag = v.diagnosis.length ? v.diagnosis.map(d => d.text).join("; ") : "ok";
      return [v.name, vmState(v), num(f.actual_bytes),
        num(f.guest_used_bytes ?? f.guest_used_legacy_bytes), num(f.guest_cache_bytes),
        num(f.guest_free_bytes), num(f.guest_usable_bytes), num(f.host_rss_bytes),
        num(f.host_backed_idle_bytes),
        `${onOff(v.device && v.device.free_page_reporting)}/${onOff(v.device && v.device.autodeflate)}`,
        {text: diag, attrs: {class: v.diagnosis.length ? "bad diagnosis" : "ok diagnosis"}},
        plan.has(v.name) ? {text: plan.get(v.name).short, attrs: {title: plan.get(v.name).long}} : "–"];
    }), true, "no VMs in the latest sample");
}

const VM_FIELDS = [["vm.balloon_actual", "balloon (actual)"], ["vm.guest_used", "guest used"],
  ["vm.guest_cache", "guest cache"], ["vm.qemu_rss", "QEMU RSS"]];

// Each VM's chart from `hist` (the window's series, every VM's) and `events` (the controller's
// markers, every VM's).
function vmCharts(latest, hist, events, plan) {
  const box = document.getElementById("vm-charts");
  box.textContent = "";
  for (const vm of latest.vms) {
    const ev = {events: events.events.filter(m => m.name === vm.name), truncated: events.truncated};
    const part = el("div", {class: "vm", "data-vm": vm.name});
    part.append(el("h3", {}, vm.name));
    if (plan.has(vm.name)) part.append(el("div", {class: "muted note plan"}, "controller: " + plan.get(vm.name).long));
    const c = el("div", {class: "chart"});
    const marks = el("div", {class: "marks muted"});
    part.append(c, marks);
    box.append(part);
    const series = VM_FIELDS.map(([name, label], i) => {
      const found = hist.series.find(x => x.key.name === name && x.key.vm === vm.name);
      return {label, points: found ? found.points : [], color: PALETTE[i]};
    }).filter(x => x.points.length);
    // The markers nearest the pointer, in words.
    const near = uu => {
      const i = uu.cursor.idx;
      if (i === null || i === undefined) return;
      const t = uu.data[0][i], span = uu.posToVal(8, "x") - uu.posToVal(0, "x");
      const hit = ev.events.filter(m => Math.abs(m.at_unix_ms / 1000 - t) <= Math.max(span, 1));
      if (hit.length) marks.textContent = hit.map(m => `${when(m.at_unix_ms)} ${m.kind}` +
        (m.kind === "harm" ? ` (${m.outcome}): ${m.reason}` :
          ` ${bytes(m.from_bytes)} → ${bytes(m.target_bytes)} (${m.outcome}): ${m.reason}`)).join(" · ");
    };
    const u = chart(c, series, {marks: ev.events, onCursor: ev.events.length ? near : null,
      empty: "no recorded figures for this VM yet"});
    const n = ev.events.length;
    if (!n) marks.textContent = "no controller actions or harm in this window";
    else if (u) marks.textContent = `${n} controller event(s) in this window${ev.truncated ? " (the newest)" : ""}; point at a marker for its reason`;
  }
}

// ---- The host

function hostCharts(latest, hist) {
  const by = new Map(hist.series.filter(x => !x.key.vm).map(x => [x.key.name, x.points]));
  const lru = (latest.accounting.decompositions || [])[0];
  // The stack, bottom up: X, the kernel's terms, then the LRU lists and MemFree on top.
  const parts = lru ? lru.parts.map(p => ({label: p.label, name: "host.lru." + slug(p.label)})) : [];
  const rank = l => ({Unevictable: 1, Active: 2, Inactive: 3, MemFree: 4})[l] || 0;
  parts.sort((a, b) => rank(a.label) - rank(b.label));
  const stack = [{label: "X (black hole)", points: (by.get("host.black_hole") || []), color: X_COLOR}]
    .concat(parts.map((p, i) => ({label: p.label, points: by.get(p.name) || [],
      color: LRU_COLOR[p.label] || PALETTE[i % PALETTE.length], show: p.label !== "MemFree"})))
    .filter(nonZero);
  chart(document.getElementById("host-chart"), stack, {stacked: true});

  const x = by.get("host.black_hole") || [];
  chart(document.getElementById("x-chart"), [{label: "X", points: x, color: X_COLOR}],
    {empty: "X is not computed on this host's samples"});
  const notes = document.getElementById("x-notes");
  notes.textContent = "";
  if (lru) {
    notes.append(el("div", {}, `X = MemTotal − (${lru.formula.replace(" + X", "")}); now ${bytes(lru.unaccounted_bytes)}.`));
    for (const w of lru.within_x || []) notes.append(el("div", {}, `in X, at most: ${w.label} ${bytes(w.bytes)}`));
    for (const cv of lru.caveats || []) notes.append(el("div", {}, "caveat: " + cv));
  }

  const psi = [["psi.some.avg10", "some"], ["psi.full.avg10", "full"]]
    .map(([n, label], i) => ({label, points: by.get(n) || [], color: [X_COLOR, "#b07aa1"][i]}));
  chart(document.getElementById("psi-chart"), psi.filter(nonZero), {fmt: pct,
    empty: psi.some(p => p.points.length) ? "no memory pressure: PSI some and full avg10 were 0 % over the whole window"
      : "PSI not read on this host"});

  const ksm = [["host.ksm_saved", "KSM saved"], ["host.ksm_merging", "merging (processes)"]]
    .map(([n, label], i) => ({label, points: by.get(n) || [], color: PALETTE[i + 2]}));
  chart(document.getElementById("ksm-chart"), ksm.filter(nonZero), {
    empty: ksm.some(p => p.points.length) ? "KSM saved nothing over the whole window" : "KSM not available on this host"});
  // What KSM costs: ksmd's CPU time is a counter, so its share of one CPU is taken between
  // consecutive points (none across a reboot, where the counter starts again).
  const cpu = by.get("host.ksmd_cpu_seconds") || [];
  const share = cpu.slice(1).map(([t, v], i) => [t, v, cpu[i]])
    .filter(([t, v, [t0, v0]]) => t > t0 && v >= v0)
    .map(([t, v, [t0, v0]]) => [t, 100 * (v - v0) / ((t - t0) / 1000)]);
  chart(document.getElementById("ksmd-chart"), [{label: "ksmd CPU (% of one CPU)", points: share,
    color: PALETTE[4]}], {fmt: pct,
    empty: cpu.length ? "ksmd's CPU: not enough points yet" : "ksmd not seen on this host"});
  const k = latest.ksm || {};
  document.getElementById("ksm-notes").textContent = k.available ?
    `now: run=${k.run}, saved ${bytes(k.saved_bytes)}, profit ${bytes(k.general_profit_bytes)}` +
    ksmdCpu(latest) + ". " + (k.notes || []).join(" ") : "KSM: not available";
}

// ksmd's CPU: its time since boot, and its share of one CPU since the page's last look (a
// counter: a share needs two readings of the same thread).
let lastKsmd = null;
function ksmdCpu(latest) {
  const k = latest.sample && latest.sample.host && latest.sample.host.ksmd;
  if (!k) return "";
  const now = {pid: k.pid, ms: k.user_ms + k.system_ms, at: latest.taken_at_unix_ms};
  let share = "";
  const b = lastKsmd;
  if (b && b.pid === now.pid && now.at > b.at && now.ms >= b.ms) {
    share = `, ${(100 * (now.ms - b.ms) / (now.at - b.at)).toFixed(2)} % of one CPU over the last ${Math.round((now.at - b.at) / 1000)} s`;
  }
  if (!b || now.at > b.at) lastKsmd = now;
  return `; ksmd CPU ${(now.ms / 1000).toFixed(1)} s since boot${share}`;
}

// ---- Refresh

const VERDICT_CLASS = {holds: "ok", explained: "ok", not_applicable: "muted", broken: "bad"};

// One refresh at a time: a slow one overlapping the next (the timer, or a new window) would
// fill the VM boxes twice.
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
  const err = document.getElementById("error");
  err.textContent = "";
  showWindow(win);
  const s = since(win);
  try {
    // One read of the history for every chart, one for every marker.
    const fields = ["host.", "psi.", ...VM_FIELDS.map(f => f[0])].join(",");
    const [latest, balloon, hist, events] = await Promise.all([get("/api/v1/latest"),
      get("/api/v1/balloon"), get(`/api/v1/series?since=${s}&field=${fields}`),
      get(`/api/v1/balloon/events?since=${s}`)]);
    document.getElementById("stamp").textContent =
      `latest sample ${when(latest.taken_at_unix_ms)} · ${latest.vms.length} VM(s)`;
    for (const u of charts) u.destroy();
    charts = [];
    hostCharts(latest, hist);
    const plan = decisions(balloon);
    controllerLine(balloon);
    vmTable(latest, plan);
    vmCharts(latest, hist, events, plan);

    table(document.getElementById("identities"), ["identity", "left", "right", "residual", "verdict"],
      latest.accounting.identities.map(i => [
        i.name, `${i.left} = ${bytes(i.left_bytes)}`, `${i.right} = ${bytes(i.right_bytes)}`,
        {text: bytes(i.residual_bytes), attrs: {class: "num"}},
        {text: String(i.verdict).replace("_", " "), attrs: {class: VERDICT_CLASS[i.verdict] || "bad"}}]));
    // PSS and vmallocinfo are read on a slower cadence: those identities as last judged.
    const c = latest.carried || {};
    document.getElementById("carried").textContent = (c.identities || []).length ?
      `${c.identities.join(", ")}: as judged on the sample of ${c.age_s} s before (the last that read PSS and vmallocinfo)` : "";

    const leaks = await get(`/api/v1/leaks?since=${win.range === "1h" ? "6h" : s}`);
    table(document.getElementById("leaks"), ["what", "kind", "growth", "per hour", "fit r²", "look next"],
      leaks.leaks.map(l => [keyText(l.what), l.kind + (l.shape ? " (" + l.shape + ")" : ""), num(l.growth_bytes),
        num(l.slope_bytes_per_hour), {text: Number(l.r2).toFixed(2), attrs: {class: "num"}}, l.look_next]));
    document.body.dataset.drawn = String(Date.now());
  } catch (e) {
    err.textContent = String(e);
  }
}

window.addEventListener("hashchange", () => { win = readWindow(); refresh(); });
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    for (const u of charts) u.setSize(chartSize(u.root.parentElement));
  }, 100);
});
// Light or dark switched: the axes take their colours when drawn.
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => refresh());
writeWindow(win);
refresh();
setInterval(refresh, 30000);
