// The JSON API, called with the user's token exactly like the CLI does.
// The token lives in this tab's sessionStorage: closing the tab logs out,
// and no cookie is ever sent, so another site cannot act as the user.

const KEY = "vmdr.token";

export class ApiError extends Error {
  // A problem-details answer: {code, detail, fix, status}.
  constructor(problem, status) {
    super(problem.detail || `HTTP ${status}`);
    this.code = problem.code || `HTTP ${status}`;
    this.fix = problem.fix || "";
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const value = token.get();
  if (value) headers.Authorization = `Bearer ${value}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (!response.ok) {
    const error = new ApiError(data || {}, response.status);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("vmdr:unauthorized"));
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);

export async function waitForJob(id, onUpdate, { interval = 700, stop } = {}) {
  // Poll a job until it ends (or until stop() says nobody waits any more);
  // every answer goes to onUpdate.
  for (;;) {
    const job = await get(`/v1/jobs/${encodeURIComponent(id)}`);
    onUpdate?.(job);
    if (job.finished) return job;
    if (stop?.()) return job;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
