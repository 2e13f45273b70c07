// Operations on a protected item, each behind a confirmation dialog that
// says what will happen. Reprotect shows its prechecks and its transfer plan
// first, and cannot be confirmed while a precheck refuses it.
import { ApiError, get, post, waitForJob } from "./api.js";
import { bytes, duration, h, problemBox, table } from "./dom.js";

const TO_CLOUD = "primaryToRecovery";

// What each allowed operation is called, and what the dialog says, by direction.
function describe(op, item) {
  const vm = item.vm;
  const toCloud = item.direction === TO_CLOUD;
  const texts = {
    plannedFailover: toCloud
      ? ["Fail over", `Planned failover of ${vm} to the cloud: the VM is shut down, its last changes are replicated, then it starts in the cloud. No data is lost.`]
      : ["Fail back", `Fail back ${vm} to on-premises: the cloud VM is shut down, its last changes reach the on-premises VM, which then starts. The disks are proved equal before the switch.`],
    unplannedFailover: ["Unplanned failover", `Start ${vm} in the cloud from a recovery point, without shutting the on-premises VM down. Changes after that point are not in the cloud VM.`],
    cancelFailover: ["Cancel failover", `Stop the cloud VM of ${vm} and return to the on-premises VM, as before the failover.`],
    commit: ["Commit", `Commit the failover of ${vm}: it can no longer be cancelled, and reprotect becomes possible.`],
    reprotect: ["Reprotect", ""],
    testFailover: toCloud
      ? ["Test failover", `Start a copy of ${vm} in the isolated test network from a recovery point. Replication goes on; production is not touched.`]
      : ["Failback drill", `Build a scratch VM on-premises from the replica at a recovery point. The real on-premises VM and the running cloud VM are not touched.`],
    testFailoverCleanup: toCloud
      ? ["Test failover cleanup", `Remove every resource the test failover of ${vm} created.`]
      : ["Failback drill cleanup", `Remove the scratch VM of the failback drill of ${vm}.`],
    resync: ["Resync", `Compare every block of ${vm}'s disks with the replica and send what differs.`],
    disableProtection: ["Disable protection", `Stop protecting ${vm} and delete its replica and recovery points. The VM itself is not touched.`],
  };
  return texts[op] || [op, `${op} on ${vm}.`];
}

const DANGER = new Set(["unplannedFailover", "disableProtection"]);
const POINT_CHOICE = new Set(["unplannedFailover", "testFailover"]);

export function actionButtons(item, onStarted) {
  if (item.running) {
    return h("p", { class: "muted" }, `${item.running} is running; actions return when it ends.`);
  }
  const ops = item.allowed.filter((op) => op !== "enableProtection");
  return h("div", { class: "actions", role: "group", "aria-label": `Actions on ${item.vm}` },
    ops.map((op) => {
      const [label] = describe(op, item);
      return h("button", {
        type: "button", "data-op": op, "data-key": `op-${op}`,
        class: DANGER.has(op) ? "danger" : null,
        onclick: () => (op === "reprotect" ? reprotect(item, onStarted) : operate(op, item, onStarted)),
      }, label);
    }));
}

// The one modal dialog of the page; resolves true when confirmed.
function ask(title, body, { confirmLabel = "Confirm", danger = false, ready = true } = {}) {
  const dialog = document.getElementById("confirm");
  const ok = document.getElementById("confirm-ok");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-body").replaceChildren(body);
  ok.textContent = confirmLabel;
  ok.className = danger ? "danger" : "primary";
  ok.disabled = !ready;
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener("close", onClose);
      document.getElementById("confirm-cancel").onclick = null;
      resolve(answer);
    };
    const onClose = () => done(dialog.returnValue === "ok");
    dialog.addEventListener("close", onClose);
    document.getElementById("confirm-cancel").onclick = () => dialog.close("cancel");
    dialog.returnValue = "";
    dialog.showModal();
    (ready ? ok : document.getElementById("confirm-cancel")).focus();
  });
}

// A confirmed action that is not an item operation (a plan's approve or
// resume): its refusal is shown the same way as an operation's.
export async function confirmThen(title, text, label, run) {
  if (!(await ask(title, h("p", {}, text), { confirmLabel: label }))) return;
  try {
    await run();
  } catch (error) {
    await ask(`${title}: refused`, problemBox(error), { confirmLabel: "Close" });
  }
}

function enableConfirm(enabled) {
  const ok = document.getElementById("confirm-ok");
  ok.disabled = !enabled;
  if (enabled) ok.focus();
}

async function start(op, item, body, onStarted) {
  try {
    const answer = await post(`/v1/protected-items/${encodeURIComponent(item.id)}/${op}`, body);
    onStarted(answer.job);
  } catch (error) {
    await ask(`${describe(op, item)[0]} was refused`, problemBox(error), { confirmLabel: "Close" });
  }
}

async function operate(op, item, onStarted) {
  const [label, text] = describe(op, item);
  const form = h("div", {}, h("p", {}, text));
  let pointSelect = null;
  if (POINT_CHOICE.has(op) && item.direction === TO_CLOUD) {
    const points = await get(`/v1/protected-items/${encodeURIComponent(item.id)}/recovery-points`);
    pointSelect = h("select", { id: "recovery-point" },
      h("option", { value: "" }, "Latest point"),
      points.slice().reverse().map((p) =>
        h("option", { value: p.seq }, `#${p.seq} ${new Date(p.time * 1000).toLocaleString()} ${p.tag || ""}`)));
    form.append(h("label", { for: "recovery-point" }, "Recovery point"), pointSelect);
  }
  const confirmed = await ask(label, form, { confirmLabel: label, danger: DANGER.has(op) });
  if (!confirmed) return;
  const body = {};
  if (pointSelect && pointSelect.value) body.recovery_point = Number(pointSelect.value);
  await start(op, item, body, onStarted);
}

function findings(list) {
  if (!list || !list.length) return h("p", { class: "healthy" }, "Every precheck passed.");
  const order = { error: 0, warning: 1 };
  return h("div", { "aria-label": "Precheck results" },
    list.slice().sort((a, b) => (order[a.severity] ?? 2) - (order[b.severity] ?? 2)).map((f) =>
      h("div", { class: `finding ${f.severity}`, "data-code": f.code },
        h("p", {}, h("code", {}, f.code), ` ${f.severity}: `, f.message),
        f.fix ? h("p", {}, h("strong", {}, "Fix: "), f.fix) : null)));
}

function planTable(plan) {
  return h("div", {},
    h("p", {}, `${plan.mode}: ${bytes(plan.bytes)} to move of ${bytes(plan.capacity)}`,
      plan.seconds ? `, about ${duration(plan.seconds)} at the process server's measured rate` : "",
      `; ${duration(plan.seconds_at_1gbit)} at 1 Gbit/s.`),
    table("Transfer plan", [
      { title: "Disk", cell: (d) => d.unit },
      { title: "Target", cell: (d) => d.target },
      { title: "Matched by", cell: (d) => d.matched_by || "—", narrow: true },
      { title: "To move", cell: (d) => bytes(d.bytes), num: true },
      { title: "Capacity", cell: (d) => bytes(d.capacity), num: true, narrow: true },
    ], plan.disks));
}

async function reprotect(item, onStarted) {
  const status = h("p", { role: "status" }, "Running the prechecks and computing the transfer plan…");
  const mode = h("select", { id: "reprotect-mode" },
    h("option", { value: "auto" }, "Automatic (original location while the VM exists)"),
    h("option", { value: "olr" }, "Original location"),
    h("option", { value: "alr" }, "Alternate location"));
  const result = h("div", {});
  const toCloud = item.direction === TO_CLOUD;
  const body = h("div", {},
    h("p", {}, toCloud
      ? `Reprotect ${item.vm} from the cloud back to on-premises: its cloud disks replicate to the on-premises VM.`
      : `Reprotect ${item.vm} to the cloud again: only the blocks changed since failback are sent.`),
    toCloud ? [h("label", { for: "reprotect-mode" }, "Recovery location"), mode] : null,
    status, result);
  let generation = 0; // only the newest check may fill the dialog
  const check = async () => {
    const mine = ++generation;
    const current = () => mine === generation && document.getElementById("confirm").open;
    enableConfirm(false);
    status.textContent = "Running the prechecks and computing the transfer plan…";
    result.replaceChildren();
    try {
      const started = await post(`/v1/protected-items/${encodeURIComponent(item.id)}/reprotect-plan`,
        toCloud ? { mode: mode.value } : {});
      const job = await waitForJob(started.job, null, { stop: () => !current() });
      if (!current()) return;
      if (job.state !== "succeeded") {
        status.textContent = "The check could not finish.";
        result.replaceChildren(problemBox(new ApiError({ ...job.error, detail: job.error?.message }, 409)));
        return;
      }
      const plan = (await get(`/v1/protected-items/${encodeURIComponent(item.id)}`)).reprotect_plan;
      if (!current()) return;
      const refused = (plan.findings || []).some((f) => f.severity === "error");
      status.textContent = refused
        ? "Reprotect is refused until the errors below are fixed."
        : "Prechecks passed. Confirm to start the reprotect.";
      result.replaceChildren(findings(plan.findings), planTable(plan));
      enableConfirm(!refused);
    } catch (error) {
      if (!current()) return;
      status.textContent = "The check could not run.";
      result.replaceChildren(problemBox(error));
    }
  };
  mode.addEventListener("change", check);
  const asked = ask(`Reprotect ${item.vm}`, body, { confirmLabel: "Reprotect", ready: false });
  check();
  if (!(await asked)) return;
  await start("reprotect", item, toCloud ? { mode: mode.value } : {}, onStarted);
}
