// The dashboard's shell: login, the hash router, and the refresh loop that
// keeps the page live (every REFRESH_MS, the page's data is fetched again
// and the page rebuilt only if an answer changed; focus, open <details> and
// form values survive the rebuild, so keyboard users keep their place).
import { get, post, token } from "./api.js";
import { h, problemBox } from "./dom.js";
import * as pages from "./pages.js";

const REFRESH_MS = 2000;
const view = document.getElementById("view");
const nav = document.getElementById("nav");

const routes = [
  [/^\/overview$/, pages.overview],
  [/^\/items$/, pages.items],
  [/^\/items\/([^/]+)$/, pages.item],
  [/^\/jobs$/, pages.jobs],
  [/^\/jobs\/([^/]+)$/, pages.job],
  [/^\/plans$/, pages.plans],
  [/^\/infrastructure$/, pages.infrastructure],
  [/^\/traffic$/, pages.traffic],
];

let current = { route: null, key: null, timer: null };
let generation = 0; // each show() starts one refresh loop; older loops stop

function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // a malformed address: the API will say it knows no such thing
  }
}

function route() {
  const path = (location.hash || "#/overview").slice(1);
  for (const [pattern, page] of routes) {
    const match = path.match(pattern);
    if (match) return { path, page, param: match[1] ? decode(match[1]) : undefined };
  }
  return { path: "/overview", page: pages.overview };
}

function onStarted(jobId) {
  location.hash = `#/jobs/${encodeURIComponent(jobId)}`;
}

function keep() {
  // What a rebuild must not lose: the focused control, open details, inputs.
  const active = document.activeElement?.closest?.("[data-key]")?.dataset.key;
  const open = [...view.querySelectorAll("details[open]")].map((d) => d.querySelector("summary")?.textContent);
  return { active, open };
}

function restore(saved) {
  for (const d of view.querySelectorAll("details")) {
    if (saved.open.includes(d.querySelector("summary")?.textContent)) d.open = true;
  }
  if (saved.active) view.querySelector(`[data-key="${CSS.escape(saved.active)}"]`)?.focus();
}

async function render(first) {
  const { path, page, param } = route();
  const answers = [];
  const load = async (url) => {
    const data = await get(url);
    answers.push([url, data]);
    return data;
  };
  let node;
  try {
    node = await page(load, param, onStarted);
  } catch (error) {
    if (error.status === 401) return;
    node = h("section", {}, h("h1", { id: "page-title" }, "Could not load this page"), problemBox(error));
  }
  if (route().path !== path) return; // the user moved on meanwhile
  const key = JSON.stringify(answers);
  if (!first && key === current.key) return;
  if (document.getElementById("confirm").open && !first) return; // never under an open dialog
  const saved = keep();
  current.key = key;
  view.replaceChildren(node);
  view.dataset.page = path;
  view.dataset.loaded = String(Date.now());
  if (first) {
    document.title = `${node.querySelector("h1")?.textContent || "vmdr"} · vmdr`;
    view.focus({ preventScroll: true });
  } else restore(saved);
}

function markNav(path) {
  for (const a of nav.querySelectorAll("a")) {
    if (path.startsWith(a.getAttribute("href").slice(1))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function show() {
  clearTimeout(current.timer);
  const { path } = route();
  markNav(path);
  current = { route: path, key: null, timer: null };
  const mine = ++generation;
  const loop = async (first) => {
    await render(first);
    if (mine === generation && token.get()) current.timer = setTimeout(() => loop(false), REFRESH_MS);
  };
  loop(true);
}

function loggedIn(yes) {
  document.getElementById("login").hidden = yes;
  view.hidden = !yes;
  nav.hidden = !yes;
  document.getElementById("logout").hidden = !yes;
  if (yes) show();
  else {
    generation += 1;
    clearTimeout(current.timer);
    view.replaceChildren();
    document.getElementById("user").focus();
  }
}

async function enter(value, fields) {
  // Keep the session token, check it with the server, show the dashboard.
  const error = document.getElementById("login-error");
  token.set(value);
  try {
    const who = await get("/v1/session");
    error.textContent = "";
    for (const field of fields) field.value = "";
    const logout = document.getElementById("logout");
    logout.title = `Logged in as ${who.client} (${who.role})`;
    logout.textContent = `Log out ${who.client.replace(/^user:/, "")}`;
    loggedIn(true);
  } catch (e) {
    token.clear();
    error.textContent = `${e.code}: ${e.message}`;
  }
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = document.getElementById("user");
  const password = document.getElementById("password");
  try {
    const session = await post("/v1/login", { user: user.value.trim(), password: password.value });
    await enter(session.token, [password]);
  } catch (e) {
    password.value = "";
    document.getElementById("login-error").textContent = `${e.code}: ${e.message}`;
  }
});

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  enter(field.value.trim(), [field]);
});

document.getElementById("logout").addEventListener("click", async () => {
  // End the session on the server too (a person's session token dies now).
  try {
    await post("/v1/logout");
  } catch {
    // Already expired: nothing to end, and no "refused" message either.
  }
  token.clear();
  loggedIn(false);
  document.getElementById("login-error").textContent = "";
});
window.addEventListener("vmdr:unauthorized", () => {
  token.clear();
  loggedIn(false);
  document.getElementById("login-error").textContent = "The server refused the token: log in again.";
});
window.addEventListener("hashchange", () => token.get() && show());

loggedIn(Boolean(token.get()));
