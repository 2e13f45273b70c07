// Building the page from data without HTML strings: every text goes through
// textContent, so names that came from vSphere or a user cannot become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function table(caption, columns, rows, { empty = "Nothing here yet." } = {}) {
  // columns: [{title, cell(row) -> Node|string, num?, narrow?}]
  const head = h("tr", {}, columns.map((c) =>
    h("th", { scope: "col", class: c.narrow ? "hide-narrow" : null }, c.title)));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map((c) =>
        h("td", { class: [c.num ? "num" : "", c.narrow ? "hide-narrow" : ""].join(" ").trim() || null },
          c.cell(row)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty))];
  return h("div", { class: "table-wrap" },
    h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)));
}

export function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function badge(text, kind = text) {
  return text ? h("span", { class: `badge ${kind}` }, text) : "—";
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Number(seconds);
  if (s < 1) return "under 1 s";
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function when(value) {
  // Epoch seconds or an ISO string (naive ones are UTC) → local time.
  if (value === null || value === undefined) return "—";
  let date;
  if (typeof value === "number") date = new Date(value * 1000);
  else date = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

export function problemBox(error) {
  // An API error as the user should read it: code, what happened, the fix.
  return h("div", { class: "problem", role: "alert" },
    h("p", {}, h("code", { class: "code" }, error.code || "error"), " ", error.message || String(error)),
    error.fix ? h("p", {}, h("strong", {}, "Fix: "), error.fix) : null);
}
