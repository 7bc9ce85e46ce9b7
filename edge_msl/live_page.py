"""The live view's page (served by :mod:`edge_msl.live`): one HTML document, script and style inline, nothing
fetched from anywhere but its own ``/events`` stream. Azimuth is counter-clockwise from the array's x axis,
drawn to the right, as everywhere in edge-msl."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}} - live</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
  header { display: flex; gap: 18px; align-items: baseline; flex-wrap: wrap; }
  h1 { font-size: 18px; margin: 0 8px 0 0; }
  .pill { padding: 1px 8px; border-radius: 9px; background: #ddd; }
  .pill.live { background: #c8f0c8; } .pill.ended { background: #eee; color: #777; }
  .pill.reconnecting, .pill.connecting { background: #ffe4b3; }
  main { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 10px; }
  .panel { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
  .panel h2 { font-size: 13px; font-weight: 600; margin: 0 0 4px; color: #555; }
  ul#talkers { list-style: none; padding: 0; margin: 6px 0 0; min-height: 3em; }
  ul#talkers li { font-variant-numeric: tabular-nums; padding: 1px 0; }
  ul#talkers li.none { color: #888; }
  .sw { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 6px; }
  small { color: #777; }
</style>
</head>
<body>
<header>
  <h1>{{TITLE}}</h1>
  <span>stream <span id="status" class="pill connecting">connecting</span></span>
  <span>t = <span id="t">-</span> s</span>
  <span><span id="count">0</span> talker(s)</span>
  <small><span id="received">0</span> updates received</small>
</header>
<main>
  <div class="panel">
    <h2>Talkers around the array (azimuth, distance; trail: last 3 s)</h2>
    <canvas id="radar" width="420" height="420" style="width:420px;height:420px"></canvas>
    <ul id="talkers"><li class="none">no one talking</li></ul>
  </div>
  <div class="panel">
    <h2>Azimuth over time</h2>
    <canvas id="strip" width="600" height="420" style="width:600px;height:420px"></canvas>
    <div style="max-width:600px"><small>azimuth counter-clockwise from the array's x axis (0&deg; to the right on the radar);
      hollow marks: a talker held through a short pause</small></div>
  </div>
</main>
<script>
"use strict";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"];
const TRAIL_S = 3;
let historyS = 30, events = [], received = 0, ended = false;

function color(id) { return id === null ? "#444" : COLORS[id % COLORS.length]; }
function latest() { return events.length ? events[events.length - 1] : null; }
function add(ev) {
  events.push(ev);
  const t = ev.t_s;
  while (events.length && events[0].t_s < t - historyS) events.shift();
}
function setStatus(s) { const el = document.getElementById("status"); el.textContent = s; el.className = "pill " + s; }

function setup(canvas) {
  const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return [g, w, h];
}

function drawRadar() {
  const [g, w, h] = setup(document.getElementById("radar"));
  const cx = w / 2, cy = h / 2, R = Math.min(w, h) / 2 - 28;
  let dmax = 2;
  for (const ev of events) for (const s of ev.sources) if (s.distance_m) dmax = Math.max(dmax, s.distance_m);
  const rings = Math.ceil(dmax), scale = R / rings;
  const pos = (s) => {
    const a = s.azimuth_deg * Math.PI / 180, r = s.distance_m ? s.distance_m * scale : 0.8 * R;
    return [cx + r * Math.cos(a), cy - r * Math.sin(a)];
  };
  g.strokeStyle = "#ddd"; g.fillStyle = "#888"; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
  for (let k = 1; k <= rings; k++) {
    g.beginPath(); g.arc(cx, cy, k * scale, 0, 2 * Math.PI); g.stroke();
    g.fillText(k + " m", cx + 3, cy - k * scale + 12);
  }
  g.textAlign = "center"; g.textBaseline = "middle";
  for (let d = 0; d < 360; d += 45) {
    const a = d * Math.PI / 180;
    g.beginPath(); g.moveTo(cx, cy); g.lineTo(cx + R * Math.cos(a), cy - R * Math.sin(a)); g.stroke();
    g.fillText(d + "\u00b0", cx + (R + 15) * Math.cos(a), cy - (R + 15) * Math.sin(a));
  }
  g.fillStyle = "#333"; g.beginPath(); g.arc(cx, cy, 4, 0, 2 * Math.PI); g.fill();
  const now = latest();
  if (!now) return;
  const trails = new Map();
  for (const ev of events) {
    if (ev.t_s < now.t_s - TRAIL_S) continue;
    for (const s of ev.sources) {
      const key = s.id === null ? "r" + Math.round(s.azimuth_deg / 10) : s.id;
      if (!trails.has(key)) trails.set(key, { id: s.id, pts: [] });
      trails.get(key).pts.push([ev.t_s, pos(s)]);
    }
  }
  g.lineWidth = 2;
  for (const tr of trails.values()) {
    for (let i = 1; i < tr.pts.length; i++) {
      if (tr.pts[i][0] - tr.pts[i - 1][0] > 0.6) continue;
      g.globalAlpha = 0.15 + 0.6 * (1 - (now.t_s - tr.pts[i][0]) / TRAIL_S);
      g.strokeStyle = color(tr.id);
      g.beginPath(); g.moveTo(...tr.pts[i - 1][1]); g.lineTo(...tr.pts[i][1]); g.stroke();
    }
  }
  g.globalAlpha = 1; g.textAlign = "left"; g.font = "bold 12px system-ui, sans-serif";
  for (const s of now.sources) {
    const [x, y] = pos(s), r = 5 + 9 * s.confidence;
    g.beginPath(); g.arc(x, y, r, 0, 2 * Math.PI);
    if (s.active) { g.fillStyle = color(s.id); g.fill(); }
    else { g.strokeStyle = color(s.id); g.lineWidth = 2; g.stroke(); }
    g.fillStyle = "#222";
    g.fillText((s.id === null ? "" : "#" + s.id + " ") + s.confidence.toFixed(2), x + r + 3, y - r);
  }
}

function drawStrip() {
  const [g, w, h] = setup(document.getElementById("strip"));
  const L = 40, T = 8, W = w - L - 10, H = h - T - 26;
  // the strip grows with the stream from 5 s to history_s, so a short recording fills it too
  const now = latest(), t1 = now ? now.t_s : 5, span = Math.min(historyS, Math.max(5, now ? t1 - events[0].t_s : 5));
  const t0 = t1 - span;
  const X = (t) => L + (t - t0) / span * W, Y = (az) => T + H - az / 360 * H;
  g.strokeStyle = "#e3e3e3"; g.fillStyle = "#888"; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
  g.textAlign = "right"; g.textBaseline = "middle";
  for (let d = 0; d <= 360; d += 45) {
    g.beginPath(); g.moveTo(L, Y(d)); g.lineTo(L + W, Y(d)); g.stroke(); g.fillText(d + "\u00b0", L - 4, Y(d));
  }
  g.textAlign = "center"; g.textBaseline = "top";
  const step = span > 60 ? 10 : span > 12 ? 5 : 1;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    g.beginPath(); g.moveTo(X(t), T); g.lineTo(X(t), T + H); g.stroke(); g.fillText(t + " s", X(t), T + H + 4);
  }
  for (const ev of events) {
    for (const s of ev.sources) {
      g.beginPath(); g.arc(X(ev.t_s), Y(s.azimuth_deg), 2.6, 0, 2 * Math.PI);
      if (s.active) { g.fillStyle = color(s.id); g.fill(); }
      else { g.strokeStyle = color(s.id); g.lineWidth = 1; g.stroke(); }
    }
  }
}

function drawList() {
  const now = latest(), ul = document.getElementById("talkers");
  document.getElementById("t").textContent = now ? now.t_s.toFixed(1) : "-";
  document.getElementById("count").textContent = now ? now.sources.length : 0;
  document.getElementById("received").textContent = received;
  ul.replaceChildren();
  const srcs = now ? [...now.sources].sort((a, b) => b.confidence - a.confidence) : [];
  if (!srcs.length) {
    const li = document.createElement("li"); li.className = "none"; li.textContent = "no one talking"; ul.append(li);
  }
  for (const s of srcs) {
    const li = document.createElement("li"), sw = document.createElement("span");
    li.className = "talker"; li.dataset.id = s.id === null ? "" : s.id; li.dataset.azimuth = s.azimuth_deg;
    sw.className = "sw"; sw.style.background = color(s.id);
    li.append(sw, (s.id === null ? "detection" : "#" + s.id) + "  " + s.azimuth_deg.toFixed(1) + "\u00b0  " +
              (s.distance_m ? s.distance_m.toFixed(2) + " m  " : "") + "confidence " + s.confidence.toFixed(2) +
              (s.active ? "" : "  (pause)"));
    ul.append(li);
  }
}

function draw() { drawRadar(); drawStrip(); drawList(); }

const es = new EventSource("events");
es.addEventListener("hello", (e) => {
  const h = JSON.parse(e.data);
  historyS = h.history_s; events = [];
  h.history.forEach(add);
  if (!ended) setStatus("live");
  draw();
});
es.onmessage = (e) => { received++; add(JSON.parse(e.data)); draw(); };
es.addEventListener("end", () => { ended = true; setStatus("ended"); es.close(); draw(); });
es.onerror = () => { if (!ended) setStatus("reconnecting"); };
draw();
</script>
</body>
</html>
"""
