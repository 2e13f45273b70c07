// A small SVG chart of an item's replication samples: RPO as a line (left
// axis) and throughput as bars (right axis), over time. Written here rather
// than taken from a charting library because it is one chart of two series;
// a library would add more code than this file and a build or vendoring step.
import { bytes, duration, h, table, when } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 720, H = 240, L = 56, R = 88, T = 12, B = 28;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function ticks(max, count = 4) {
  return Array.from({ length: count + 1 }, (_, i) => (max * i) / count);
}

export function replicationChart(samples, threshold) {
  const points = samples.filter((x) => x.time);
  const caption = h("figcaption", {},
    "RPO (line, left axis) and replication throughput (bars, right axis) for the last ",
    points.length, " samples.");
  if (points.length === 0) {
    return h("figure", { class: "chart" }, h("p", { class: "muted" },
      "No replication samples yet: the first arrives with the next replication cycle."), caption);
  }
  const t0 = points[0].time, t1 = Math.max(points[points.length - 1].time, t0 + 1);
  const rpoMax = Math.max(1, threshold || 0, ...points.map((p) => p.rpo_seconds || 0)) * 1.1;
  const rateMax = Math.max(1, ...points.map((p) => p.bytes_per_second || 0)) * 1.1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const yRpo = (v) => H - B - (v / rpoMax) * (H - T - B);
  const yRate = (v) => H - B - (v / rateMax) * (H - T - B);

  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc" },
    s("title", { id: "chart-title" }, "Replication RPO and throughput"),
    s("desc", { id: "chart-desc" },
      `Worst RPO ${duration(Math.max(...points.map((p) => p.rpo_seconds || 0)))}, ` +
      `peak throughput ${bytes(Math.max(...points.map((p) => p.bytes_per_second || 0)))}/s.`));
  svg.append(s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (const v of ticks(rpoMax)) {
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: yRpo(v), y2: yRpo(v), "stroke-dasharray": "2 4" }));
    svg.append(s("text", { x: L - 6, y: yRpo(v) + 4, "text-anchor": "end" }, duration(v)));
  }
  for (const v of ticks(rateMax)) {
    svg.append(s("text", { x: W - R + 6, y: yRate(v) + 4 }, `${bytes(v)}/s`));
  }
  svg.append(s("text", { x: L, y: H - 8 }, when(t0)));
  svg.append(s("text", { x: W - R, y: H - 8, "text-anchor": "end" }, when(t1)));
  if (threshold) {
    svg.append(s("line", { x1: L, x2: W - R, y1: yRpo(threshold), y2: yRpo(threshold),
      stroke: "#9a6700", "stroke-dasharray": "6 3" }));
  }
  const bar = Math.max(2, Math.min(14, (W - L - R) / points.length - 2));
  for (const p of points) {
    if (!p.bytes_per_second) continue;
    svg.append(s("rect", { class: "rate", x: x(p.time) - bar / 2, width: bar,
      y: yRate(p.bytes_per_second), height: H - B - yRate(p.bytes_per_second) }));
  }
  const rpo = points.filter((p) => p.rpo_seconds !== null && p.rpo_seconds !== undefined);
  if (rpo.length) {
    svg.append(s("polyline", { class: "rpo", "data-series": "rpo",
      points: rpo.map((p) => `${x(p.time).toFixed(1)},${yRpo(p.rpo_seconds).toFixed(1)}`).join(" ") }));
  }
  const data = h("details", {}, h("summary", {}, "Samples as a table"),
    table("Replication samples", [
      { title: "Time", cell: (p) => when(p.time) },
      { title: "Direction", cell: (p) => p.direction, narrow: true },
      { title: "RPO", cell: (p) => duration(p.rpo_seconds), num: true },
      { title: "Bytes", cell: (p) => bytes(p.bytes), num: true },
      { title: "Throughput", cell: (p) => (p.bytes_per_second === null ? "—" : `${bytes(p.bytes_per_second)}/s`), num: true },
    ], points.slice(-50).reverse()));
  return h("figure", { class: "chart" }, svg, caption, data);
}
