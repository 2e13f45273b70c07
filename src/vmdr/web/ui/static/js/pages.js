// The dashboard's pages. Each takes `load` (a GET of the JSON API whose
// answers the app compares between refreshes) and the route's parameters,
// and returns the page as a node.
import { post } from "./api.js";
import { actionButtons, confirmThen } from "./actions.js";
import { replicationChart } from "./chart.js";
import { badge, bytes, duration, facts, h, link, problemBox, table, when } from "./dom.js";

const id = encodeURIComponent;
const DIRECTION = { primaryToRecovery: "on-premises → cloud", recoveryToPrimary: "cloud → on-premises" };
const SITE = { primary: "on-premises", recovery: "cloud" };

function tile(label, value, kind) {
  return h("div", { class: "tile" }, h("div", { class: `value ${kind || ""}` }, value), h("div", { class: "label" }, label));
}

function counts(rows, key) {
  const out = {};
  for (const row of rows) out[row[key] || "—"] = (out[row[key] || "—"] || 0) + 1;
  return out;
}

const jobLink = (j) => link(`#/jobs/${id(j.id)}`, j.kind);
const itemLink = (i) => link(`#/items/${id(i.id)}`, i.vm);

function jobsTable(caption, jobs, items = {}) {
  return table(caption, [
    { title: "Job", cell: jobLink },
    { title: "Item", cell: (j) => (items[j.item] ? itemLink(items[j.item]) : j.item || "—") },
    { title: "State", cell: (j) => badge(j.state) },
    { title: "Step", cell: (j) => j.step, num: true, narrow: true },
    { title: "Started", cell: (j) => when(j.created_at), narrow: true },
    { title: "Error", cell: (j) => (j.error ? `${j.error.code}: ${j.error.message}` : "") },
  ], jobs.slice().reverse(), { empty: "No jobs." });
}

export async function overview(load) {
  // Counts only (GET /v1/overview): the same few queries for 10 items or 10,000.
  const o = await load("/v1/overview");
  const byId = Object.fromEntries(o.jobs.filter((j) => j.vm).map((j) => [j.item, { id: j.item, vm: j.vm }]));
  return h("section", { "aria-labelledby": "page-title" },
    h("h1", { id: "page-title" }, "Overview"),
    h("div", { class: "tiles" },
      tile("protected items", o.items),
      tile("worst RPO", o.worst_rpo_seconds === null ? "—" : duration(o.worst_rpo_seconds)),
      tile("running jobs", o.running_jobs),
      ["Normal", "Warning", "Critical"].map((k) => tile(`health ${k}`, o.health[k] || 0, k))),
    h("h2", {}, "Items by state"),
    table("Items by state", [
      { title: "State", cell: ([s]) => s },
      { title: "Items", cell: ([, n]) => n, num: true },
    ], Object.entries(o.states)),
    h("h2", {}, "Running jobs"),
    jobsTable("Running jobs", o.jobs, byId));
}

export async function items(load) {
  const rows = await load("/v1/protected-items");
  return h("section", {},
    h("h1", { id: "page-title" }, "Protected items"),
    table("Protected items", [
      { title: "VM", cell: itemLink },
      { title: "State", cell: (i) => [i.state, i.running ? h("span", { class: "muted" }, ` (${i.running})`) : ""] },
      { title: "Direction", cell: (i) => DIRECTION[i.direction] || i.direction, narrow: true },
      { title: "Active site", cell: (i) => SITE[i.active_site] || i.active_site },
      { title: "Health", cell: (i) => badge(i.health) },
      { title: "RPO", cell: (i) => duration(i.rpo_seconds), num: true },
      { title: "Last recovery point", cell: (i) => when(i.last_recovery_point), narrow: true },
      { title: "Process server", cell: (i) => i.process_server || "—", narrow: true },
      { title: "Master target", cell: (i) => i.master_target || "—", narrow: true },
    ], rows, { empty: "No protected items: protect a VM with `vmdr protect VM`." }));
}

function proof(disks) {
  // One entry per disk: both whole-disk roots, compared after the failback.
  const all = Object.values(disks || {});
  if (!all.length) return "—";
  const equal = all.filter((d) => d.equal).length;
  return equal === all.length ? `${equal} of ${all.length} disks proved equal` : `MISMATCH on ${all.length - equal} disk(s)`;
}

export async function item(load, ident, onStarted) {
  const [it, points, metrics, jobs] = await Promise.all([
    load(`/v1/protected-items/${id(ident)}`),
    load(`/v1/protected-items/${id(ident)}/recovery-points`),
    load(`/v1/protected-items/${id(ident)}/metrics`),
    load(`/v1/jobs?item=${id(ident)}&limit=25`),
  ]);
  // The last transfer plan says which on-premises VMDK each cloud disk
  // matched (disk UUID, controller address or size) and would write.
  const planned = (d) => it.reprotect_plan?.disks?.find((p) => p.unit === d.unit);
  return h("section", {},
    h("h1", { id: "page-title" }, it.vm),
    facts([
      ["State", [it.state, it.running ? ` (${it.running} running)` : ""]],
      ["Direction", DIRECTION[it.direction] || it.direction],
      ["Active site", SITE[it.active_site] || it.active_site],
      ["Health", badge(it.health)],
      ["RPO", duration(it.rpo_seconds)],
      ["Last recovery point", when(it.last_recovery_point)],
      ["Process server", it.process_server || "—"],
      ["Master target", it.master_target || "—"],
      ["Recovery type", it.recovery_type || "—"],
      ["Failback proof", proof(it.failback_proof)],
    ]),
    it.replication_error ? problemBox({ code: it.replication_error.code, message: it.replication_error.message, fix: it.replication_error.fix }) : null,
    it.last_error ? h("p", { class: "error" }, `Last error: ${it.last_error}`) : null,
    actionButtons(it, onStarted),
    h("h2", {}, "Disks"),
    table("Disks and their original VMDKs", [
      { title: "Unit", cell: (d) => d.unit, num: true },
      { title: "Capacity", cell: (d) => bytes(d.capacity), num: true },
      { title: "Original VMDK", cell: (d) => d.file || "—" },
      { title: "Cloud disk", cell: (d) => (d.blob ? d.blob.split("?")[0].split("/").slice(-1)[0] : "—"), narrow: true },
      { title: "Reprotect target", cell: (d) => planned(d)?.target || "—", narrow: true },
      { title: "Matched by", cell: (d) => planned(d)?.matched_by || "—", narrow: true },
    ], it.disks),
    h("h2", {}, "Replication"),
    replicationChart(metrics.samples, null),
    h("h2", {}, "Recovery points"),
    points.length
      ? h("ol", { class: "timeline", "aria-label": "Recovery points, oldest first" },
          points.map((p) => h("li", {}, `#${p.seq} `, when(p.time), p.tag ? ` · ${p.tag}` : "", ` · ${p.kind}`)))
      : h("p", { class: "muted" }, "No recovery points."),
    h("h2", {}, "Job history"),
    jobsTable(`Jobs of ${it.vm}`, jobs, { [it.id]: it }));
}

export async function jobs(load) {
  const [rows, list] = await Promise.all([load("/v1/jobs?limit=100"), load("/v1/protected-items")]);
  const byId = Object.fromEntries(list.map((i) => [i.id, i]));
  const running = rows.filter((j) => !j.finished);
  return h("section", {},
    h("h1", { id: "page-title" }, "Jobs"),
    h("h2", {}, "Running"), jobsTable("Running jobs", running, byId),
    h("h2", {}, "Recent"), jobsTable("Recent jobs", rows.filter((j) => j.finished), byId));
}

function stepRows(job) {
  const steps = (job.steps || []).map((name) => ({ name, state: "pending", bytes: 0, message: "" }));
  const find = (name) => steps.find((s) => s.name === name) || (steps.push({ name, state: "pending", bytes: 0, message: "" }), steps[steps.length - 1]);
  for (const e of job.events || []) {
    const s = find(e.step);
    if (e.kind === "start") s.state = "running";
    else if (e.kind === "end") s.state = "succeeded";
    else if (e.kind === "error") s.state = "failed";
    if (e.bytes) s.bytes = Math.max(s.bytes, e.bytes);
    if (e.message) s.message = e.message;
  }
  return steps;
}

export async function job(load, ident) {
  const j = await load(`/v1/jobs/${id(ident)}`);
  // A plan's job names its plan, not an item: then the id is all we show.
  const owner = j.item ? await load(`/v1/protected-items/${id(j.item)}`).catch(() => null) : null;
  const steps = stepRows(j);
  const done = steps.filter((s) => s.state === "succeeded").length;
  const live = !j.finished;
  return h("section", {},
    h("h1", { id: "page-title" }, `Job ${j.kind}`),
    facts([
      ["State", h("span", { "data-job-state": j.state }, badge(j.state))],
      ["Item", owner ? link(`#/items/${id(j.item)}`, owner.vm) : j.item || "—"],
      ["Started", when(j.created_at)],
      ["Updated", when(j.updated_at)],
    ]),
    h("label", { for: "job-progress" }, `Steps done: ${done} of ${steps.length}`),
    h("progress", { id: "job-progress", max: steps.length || 1, value: done }),
    j.error ? problemBox({ code: j.error.code, message: j.error.message, fix: j.error.fix }) : null,
    live ? h("p", { class: "muted" }, "This page follows the job while it runs.") : null,
    table("Steps", [
      { title: "Step", cell: (s) => s.name },
      { title: "State", cell: (s) => badge(s.state) },
      { title: "Bytes", cell: (s) => bytes(s.bytes), num: true },
      { title: "Last message", cell: (s) => s.message },
    ], steps),
    h("h2", {}, "Events"),
    table("Events", [
      { title: "Time", cell: (e) => when(e.time) },
      { title: "Step", cell: (e) => e.step },
      { title: "Kind", cell: (e) => e.kind },
      { title: "Message", cell: (e) => e.message || "" },
    ], (j.events || []).slice(-40).reverse()));
}

export async function plans(load, _params, onStarted) {
  const rows = await load("/v1/recovery-plans");
  const details = await Promise.all(rows.map((p) => load(`/v1/recovery-plans/${id(p.id)}`)));
  return h("section", {},
    h("h1", { id: "page-title" }, "Recovery plans"),
    details.length ? details.map((p) => planCard(p, onStarted)) : h("p", { class: "muted" }, "No recovery plans: create one with `vmdr plans create`."));
}

function planCard(p, onStarted) {
  const last = p.runs[0];
  const waiting = last?.waiting?.replace(/^waiting for approval: /, "");
  const act = (path, label, text) => h("button", { type: "button", "data-key": `${p.name}-${label}`,
    onclick: () => confirmThen(`${label}: ${p.name}`, text, label, async () => {
      const answer = await post(`/v1/recovery-plans/${id(p.id)}/${path}`);
      if (answer.job) onStarted(answer.job);
    }) }, label);
  return h("div", { class: "card" },
    h("h2", {}, p.name),
    h("ol", {}, p.spec.groups.map((g) => h("li", {}, `${g.name}: ${g.items.join(", ")}`,
      (g.before?.length || g.after?.length) ? h("span", { class: "muted" }, ` (${(g.before || []).length} steps before, ${(g.after || []).length} after)`) : ""))),
    last ? facts([["Last run", [last.operation, " ", badge(last.state), " ", link(`#/jobs/${id(last.job)}`, "job")]],
                  ["Done", last.done.join(", ") || "—"],
                  ["Waiting for", waiting || undefined]])
      : h("p", { class: "muted" }, "Never run."),
    last?.error ? problemBox({ code: last.error.code, message: last.error.message, fix: last.error.fix }) : null,
    h("div", { class: "actions" },
      waiting ? act("approve", "Approve waiting step", `${waiting} Approving lets ${p.name} go on.`) : null,
      ["failed", "cancelled"].includes(last?.state)
        ? act("resume", "Resume", `Run ${p.name}'s ${last.operation} again from where it stopped; what is done is not done again.`)
        : null));
}

export async function infrastructure(load) {
  const [pss, mts, vcs, hosts, stores] = await Promise.all(
    ["/v1/process-servers", "/v1/master-targets", "/v1/vcenters", "/v1/hosts", "/v1/datastores"].map(load));
  const role = (r) => badge(r.healthy ? "healthy" : "unhealthy");
  const retention = (m) => m.health?.retention || {};
  return h("section", {},
    h("h1", { id: "page-title" }, "Infrastructure"),
    h("h2", {}, "Process servers"),
    table("Process servers", [
      { title: "Name", cell: (r) => r.name }, { title: "Heartbeat", cell: role },
      { title: "Last heartbeat", cell: (r) => when(r.heartbeat_at), narrow: true },
      { title: "Replications", cell: (r) => (r.health?.replications || []).length, num: true },
      { title: "Address", cell: (r) => r.url, narrow: true },
    ], pss),
    h("h2", {}, "Master targets"),
    table("Master targets", [
      { title: "Name", cell: (r) => r.name }, { title: "Heartbeat", cell: role },
      { title: "VM", cell: (r) => r.vm?.name || "—" },
      { title: "Retention used", cell: (r) => bytes(retention(r).used_bytes), num: true },
      { title: "Retention free", cell: (r) => bytes(retention(r).free_bytes), num: true, narrow: true },
      { title: "Quota", cell: (r) => bytes(retention(r).quota_bytes), num: true, narrow: true },
      { title: "Retention ready", cell: (r) => (retention(r).ready === false ? `no: ${retention(r).problem?.code || ""}` : "yes") },
    ], mts),
    h("h2", {}, "vCenters and hosts"),
    table("vCenters", [
      { title: "Name", cell: (v) => v.name }, { title: "Kind", cell: (v) => v.kind },
      { title: "Address", cell: (v) => v.url, narrow: true }, { title: "Discovered", cell: (v) => when(v.discovered_at) },
    ], vcs),
    table("Hosts", [
      { title: "Host", cell: (x) => x.name }, { title: "Cluster", cell: (x) => x.cluster || "—" },
      { title: "vCenter", cell: (x) => vcs.find((v) => v.id === x.vcenter)?.name || x.vcenter, narrow: true },
    ], hosts),
    table("Datastores", [
      { title: "Datastore", cell: (d) => d.name }, { title: "Type", cell: (d) => d.type },
      { title: "Hosts", cell: (d) => d.hosts.length, num: true }, { title: "RDM", cell: (d) => (d.rdm_supported ? "yes" : "no"), narrow: true },
    ], stores));
}

export async function traffic(load) {
  // The list leaves out routing events; each profile's own answer has them.
  const list = await load("/v1/traffic-profiles");
  const rows = await Promise.all(list.map((p) => load(`/v1/traffic-profiles/${id(p.id)}`)));
  return h("section", {},
    h("h1", { id: "page-title" }, "Traffic profiles"),
    rows.length ? rows.map((p) => h("div", { class: "card" },
      h("h2", {}, `${p.name} (${p.dns_name})`),
      facts([["Routing", p.routing], ["Enabled", p.enabled ? "yes" : "no (see events)"],
             ["Published", (p.published || []).join(", ") || "—"], ["TTL", `${p.ttl} s`]]),
      table(`Endpoints of ${p.name}`, [
        { title: "Endpoint", cell: (e) => e.name }, { title: "Site", cell: (e) => SITE[e.site] || e.site },
        { title: "Address", cell: (e) => e.address }, { title: "Priority", cell: (e) => e.priority, num: true },
        { title: "Health", cell: (e) => badge(e.healthy === null ? "unprobed" : e.healthy ? "healthy" : "unhealthy") },
        { title: "Detail", cell: (e) => e.detail || "", narrow: true },
      ], p.endpoints),
      (p.events || []).length ? table(`Routing events of ${p.name}`, [
        { title: "Time", cell: (e) => when(e.time) }, { title: "Kind", cell: (e) => e.kind }, { title: "Message", cell: (e) => e.message },
      ], p.events) : null))
      : h("p", { class: "muted" }, "No traffic profiles: create one with `vmdr traffic create`."));
}
