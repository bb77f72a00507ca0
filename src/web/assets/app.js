// The storecast page: pick a series, see its recent sales and latest forecast, retrain it,
// forecast N days ahead. Everything comes from this gateway's JSON API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { stores: [], actual: [], forecast: [], online: [], lastDate: null };

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

function redraw() {
  drawChart($("chart"), { actual: state.actual, forecast: state.forecast, online: state.online });
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
    state.actual = sales.sales.map((day) => ({ date: day.date, value: day.sales }));
    state.lastDate = sales.last_date;
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
  await loadSeries();
}

main();
