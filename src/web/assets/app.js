// The storecast page: pick a series, see its recent sales and latest forecast, retrain it,
// forecast N days ahead; and the system around it, updated live: the node whose model actor
// owns the series, its model versions with their metrics, the cluster and the jobs.
// Everything comes from this gateway's JSON API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { stores: [], actual: [], forecast: [], online: [], lastDate: null, owner: null, closedWeekdays: new Set() };

/** How often the cluster, versions and jobs panels are read again. */
const REFRESH_MS = 2000;

// A token in the address's fragment (as `storecast demo` prints it) is kept for the session.
const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromFragment) {
  sessionStorage.setItem("storecast.token", fromFragment);
  history.replaceState(null, "", location.pathname + location.search);
}
$("token").value = sessionStorage.getItem("storecast.token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("storecast.token", $("token").value));

function token() {
  return $("token").value.trim();
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = "Bearer " + token();
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
  if (!response.ok) {
    const error = new Error(body?.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function selected() {
  return { store: $("store").value, product: $("product").value };
}

/** Weekdays (0 = Sunday) on which the store was closed every time in its last four weeks. */
function closedWeekdays(actual) {
  const recent = actual.slice(-28);
  const days = new Map();
  for (const day of recent) {
    const weekday = new Date(day.date + "T00:00:00Z").getUTCDay();
    const seen = days.get(weekday) || { open: 0, closed: 0 };
    if (day.gap) seen.closed += 1; else seen.open += 1;
    days.set(weekday, seen);
  }
  return new Set([...days].filter(([, seen]) => seen.open === 0 && seen.closed >= 2).map(([weekday]) => weekday));
}

/** Forecast points on the store's closed weekdays become gaps, as closed actual days are. */
function markClosed(points) {
  return points.map((point) => ({ ...point, gap: state.closedWeekdays.has(new Date(point.date + "T00:00:00Z").getUTCDay()) }));
}

function redraw() {
  drawChart($("chart"), { actual: state.actual, forecast: markClosed(state.forecast), online: markClosed(state.online) });
}

function cells(row, values) {
  row.replaceChildren(...values.map((value) => Object.assign(document.createElement("td"), { textContent: value })));
  return row;
}

const percent = (fraction) => (fraction > 0 ? `${(100 * fraction).toFixed(1)}%` : "–");

function seriesBase() {
  const { store, product } = selected();
  return store && product ? `/api/stores/${store}/products/${encodeURIComponent(product)}` : null;
}

/** The selected series' versions (newest first) and the node that owns its model actor. */
async function loadVersions() {
  const base = seriesBase();
  if (!base) return;
  try {
    const answer = await api(`${base}/versions?limit=10`);
    if (base !== seriesBase()) return; // another series was picked meanwhile
    state.owner = answer.owner;
    $("owner").textContent = answer.owner || "no model host";
    markOwner();
    $("versions").tBodies[0].replaceChildren(...answer.versions.map((version) => cells(document.createElement("tr"), [
      String(version.version),
      new Date(version.trained_at).toLocaleString(),
      version.node,
      version.profile,
      percent(version.metrics.mape),
      percent(version.metrics.rmspe),
    ])));
    if (answer.versions.length === 0) {
      $("versions").tBodies[0].replaceChildren(cells(document.createElement("tr"), ["not trained yet", "", "", "", "", ""]));
    }
    $("versions").dataset.store = String(answer.store);
  } catch (error) {
    $("owner").textContent = `unknown (${error.message})`;
  }
}

/** Marks the cluster table's row of the node that owns the selected series. */
function markOwner() {
  for (const row of $("cluster").tBodies[0].rows) {
    row.classList.toggle("owner", row.cells[0]?.textContent === state.owner);
  }
}

/** The cluster's nodes, their roles and series, and the scheduler's leader. */
async function loadCluster() {
  try {
    const cluster = await api("/api/cluster");
    $("leader").textContent = cluster.scheduler_leader ? `· scheduler leader ${cluster.scheduler_leader}` : "· no scheduler leader";
    $("cluster").tBodies[0].replaceChildren(...cluster.members.map((member) => cells(document.createElement("tr"), [
      member.name,
      member.roles.join(", "),
      member.series === null ? "–" : member.series.toLocaleString(),
    ])));
    markOwner();
  } catch (error) {
    $("leader").textContent = `· cannot read the cluster: ${error.message}`;
  }
}

const jobs = { before: null };

function describeJob(job) {
  const what = job.kind === "retrain" ? `retrain of store ${job.store ?? "?"}` : job.kind.replace("_", "-");
  const done = job.succeeded + job.failed;
  const item = document.createElement("li");
  item.dataset.job = String(job.id);
  item.append(`Job ${job.id} · ${what} · ${job.state}`);
  if (job.state === "pending" || job.state === "running") {
    item.append(` (${job.phase}) ${done.toLocaleString()}/${job.total.toLocaleString()} `);
    item.append(Object.assign(document.createElement("progress"), { max: 1, value: job.progress }));
  } else if (job.kind === "retrain" && job.model_version) {
    item.append(`, version ${job.model_version}`);
  } else {
    item.append(`, ${job.succeeded.toLocaleString()} of ${job.total.toLocaleString()} series trained`);
  }
  if (job.failed > 0 || job.state === "failed") {
    item.classList.add("failed");
    item.append(` · ${job.failed} failed${job.error ? ": " + job.error : ""}`);
  }
  item.append(` · ${new Date(job.created_at).toLocaleTimeString()}`);
  return item;
}

/** The newest jobs, or (with `older`) the page after the last one shown. */
async function loadJobs(older = false) {
  try {
    const page = await api(`/api/jobs?limit=8${older && jobs.before ? `&before=${jobs.before}` : ""}`);
    const items = page.jobs.map(describeJob);
    if (older) $("jobs").append(...items); else if (!jobs.paged) $("jobs").replaceChildren(...items);
    if (older) jobs.paged = true;
    if (older || !jobs.paged) {
      jobs.before = page.next_before;
      $("older-jobs").hidden = page.next_before === null;
    }
  } catch (error) {
    $("jobs").replaceChildren(Object.assign(document.createElement("li"), { textContent: `cannot list jobs: ${error.message}` }));
  }
}

async function refresh() {
  await Promise.all([loadVersions(), loadJobs(), loadCluster()]);
  setTimeout(refresh, REFRESH_MS);
}

function fillProducts() {
  const entry = state.stores.find((candidate) => String(candidate.store) === $("store").value);
  $("product").replaceChildren(...(entry?.products || []).map((product) => new Option(product.product, product.product)));
}

async function loadSeries() {
  const { store, product } = selected();
  if (!store || !product) return;
  const base = `/api/stores/${store}/products/${encodeURIComponent(product)}`;
  $("title").textContent = `Store ${store} · ${product}`;
  state.online = [];
  say("Loading…");
  try {
    const sales = await api(`${base}/sales?days=120`);
    state.actual = sales.sales.map((day) => ({ date: day.date, value: day.sales, gap: !day.open }));
    state.closedWeekdays = closedWeekdays(state.actual);
    state.lastDate = sales.last_date;
    loadVersions();
    await loadForecast(base);
    say(`${state.actual.length} days of sales up to ${state.lastDate}`);
  } catch (error) {
    say(error.message, true);
  }
  redraw();
}

async function loadForecast(base) {
  try {
    const forecast = await api(`${base}/forecast`);
    state.forecast = forecast.forecast.map((day) => ({ date: day.date, value: day.value, lower: day.lower_ci, upper: day.upper_ci }));
    const trained = forecast.model.trained_at ? new Date(forecast.model.trained_at).toLocaleString() : "unknown";
    $("subtitle").replaceChildren(
      `Model ${forecast.model.name}, version `,
      Object.assign(document.createElement("strong"), { id: "model-version", textContent: String(forecast.model.version) }),
      `, trained ${trained}; forecast written ${new Date(forecast.created_at).toLocaleString()}`,
    );
  } catch (error) {
    if (error.status !== 404) throw error;
    state.forecast = [];
    $("subtitle").textContent = "No forecast yet: retrain this series.";
  }
}

async function retrain() {
  const { store, product } = selected();
  $("retrain").disabled = true;
  try {
    const started = await api(`/api/stores/${store}/products/${encodeURIComponent(product)}/retrain`, { method: "POST" });
    say(`Job ${started.job_id}: ${started.created ? "retraining" : "joined the retrain already running"}…`);
    const finished = await follow(started);
    if (finished.state === "succeeded") {
      await loadForecast(`/api/stores/${store}/products/${encodeURIComponent(product)}`);
      await loadVersions();
      redraw();
      say(`Job ${finished.id}: version ${finished.model_version} trained.`);
    } else {
      say(`Job ${finished.id} ${finished.state}: ${finished.errors[0]?.error || finished.error || "no reason given"}`, true);
    }
  } catch (error) {
    say(error.status === 401 ? `${error.message}: enter the token below` : error.message, true);
  } finally {
    $("retrain").disabled = false;
  }
}

/** Follows a job's event stream until its `done` event. */
function follow(started) {
  return new Promise((resolve, reject) => {
    const url = started.events + (token() ? `?access_token=${encodeURIComponent(token())}` : "");
    const events = new EventSource(url);
    const seconds = Date.now();
    events.addEventListener("progress", (event) => {
      const job = JSON.parse(event.data);
      say(`Job ${job.id}: ${job.phase}, ${job.succeeded + job.failed}/${job.total} done (${Math.round((Date.now() - seconds) / 1000)} s)…`);
    });
    events.addEventListener("done", (event) => {
      events.close();
      resolve(JSON.parse(event.data));
    });
    events.onerror = () => {
      events.close();
      // The stream broke (or was refused): ask for the job until it ends instead.
      const poll = () => api(started.job).then((job) => {
        if (job.state === "pending" || job.state === "running") {
          say(`Job ${job.id}: ${job.phase}, ${job.succeeded + job.failed}/${job.total} done…`);
          setTimeout(poll, 1000);
        } else {
          resolve(job);
        }
      }, reject);
      poll();
    };
  });
}

async function forecastDaysAhead() {
  const { store, product } = selected();
  const days = Number($("days").value);
  if (!state.lastDate || !(days >= 1 && days <= 366)) {
    say("Days ahead must be 1 to 366.", true);
    return;
  }
  const day = (offset) => new Date(Date.parse(state.lastDate + "T00:00:00Z") + offset * 86400000).toISOString().slice(0, 10);
  $("forecast-days").disabled = true;
  try {
    const [answer] = await api("/api/forecast", {
      method: "POST",
      body: JSON.stringify([{ store_id: Number(store), product_name: product, begin_date: day(1), end_date: day(days) }]),
    });
    state.online = answer.forecast.map((point) => ({ date: point.timestamp.slice(0, 10), value: point.value, lower: point.lower_ci, upper: point.upper_ci }));
    redraw();
    say(`${days} days ahead by model ${answer.api.model_name} version ${answer.api.model_version}.`);
  } catch (error) {
    say(error.message, true);
  } finally {
    $("forecast-days").disabled = false;
  }
}

async function main() {
  try {
    state.stores = await api("/api/stores");
  } catch (error) {
    say(`Cannot list stores: ${error.message}`, true);
    return;
  }
  if (state.stores.length === 0) {
    say("No stores yet: load or stream sales first.");
    return;
  }
  $("store").replaceChildren(...state.stores.map((entry) => new Option(`Store ${entry.store}`, String(entry.store))));
  fillProducts();
  $("store").addEventListener("change", () => { fillProducts(); loadSeries(); });
  $("product").addEventListener("change", loadSeries);
  $("retrain").addEventListener("click", retrain);
  $("forecast-days").addEventListener("click", forecastDaysAhead);
  $("older-jobs").addEventListener("click", () => loadJobs(true));
  await loadSeries();
  refresh();
}

main();
