// A time-series chart drawn as SVG: actual sales, the weekly forecast with its 95% band and
// an online days-ahead forecast with its band. No library: this page fetches nothing else.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function dayNumber(date) {
  return Date.parse(date.slice(0, 10) + "T00:00:00Z") / 86400000;
}

/** Points split into runs of consecutive drawn points: a point with `gap` (a closed day)
 * ends a run, so the line breaks there instead of dropping to zero. */
function runs(points) {
  const out = [[]];
  for (const point of points) {
    if (point.gap) {
      if (out[out.length - 1].length) out.push([]);
    } else {
      out[out.length - 1].push(point);
    }
  }
  return out.filter((run) => run.length);
}

/** Draws `series` into `svg`: {actual: [{date, value, gap}], forecast: [{date, value, lower, upper, gap}], online: [...]}. */
function drawChart(svg, series) {
  const width = 800, height = 360, left = 56, right = 12, top = 12, bottom = 28;
  svg.replaceChildren();
  const all = [...series.actual, ...series.forecast, ...series.online].filter((point) => !point.gap);
  if (all.length === 0) {
    const text = svgElement("text", { x: width / 2, y: height / 2, "text-anchor": "middle" });
    text.textContent = "no data";
    svg.append(text);
    return;
  }
  const days = all.map((point) => dayNumber(point.date));
  const values = all.flatMap((point) => [point.value, point.lower ?? point.value, point.upper ?? point.value]);
  const [minDay, maxDay] = [Math.min(...days), Math.max(...days)];
  const maxValue = Math.max(1, ...values) * 1.05;
  const minValue = Math.min(0, ...values);
  const x = (date) => left + ((dayNumber(date) - minDay) / Math.max(1, maxDay - minDay)) * (width - left - right);
  const y = (value) => top + (1 - (value - minValue) / (maxValue - minValue)) * (height - top - bottom);

  svg.append(svgElement("line", { class: "axis", x1: left, x2: width - right, y1: y(0), y2: y(0) }));
  for (let step = 0; step <= 4; step += 1) {
    const value = minValue + ((maxValue - minValue) * step) / 4;
    svg.append(svgElement("line", { class: "axis", x1: left, x2: width - right, y1: y(value), y2: y(value), opacity: 0.5 }));
    const label = svgElement("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" });
    label.textContent = Math.round(value).toLocaleString();
    svg.append(label);
  }
  const ticks = 6;
  for (let step = 0; step <= ticks; step += 1) {
    const day = minDay + ((maxDay - minDay) * step) / ticks;
    const date = new Date(Math.round(day) * 86400000).toISOString().slice(0, 10);
    const anchor = step === 0 ? "start" : step === ticks ? "end" : "middle";
    const label = svgElement("text", { x: x(date), y: height - 8, "text-anchor": anchor });
    label.textContent = date.slice(5);
    svg.append(label);
  }

  // A one-day run draws as a dot-sized segment, so an open day between closed ones shows.
  const line = (points) => runs(points).map((run) => {
    const path = run.map((point, index) => `${index ? "L" : "M"}${x(point.date).toFixed(1)},${y(point.value).toFixed(1)}`).join("");
    return run.length === 1 ? `${path}h1` : path;
  }).join("");
  const band = (points) => runs(points).map((run) => {
    const upper = run.map((point) => `${x(point.date).toFixed(1)},${y(point.upper).toFixed(1)}`);
    const lower = run.slice().reverse().map((point) => `${x(point.date).toFixed(1)},${y(point.lower).toFixed(1)}`);
    return `M${upper.join("L")}L${lower.join("L")}Z`;
  }).join("");
  if (series.forecast.length) svg.append(svgElement("path", { class: "band", d: band(series.forecast) }));
  if (series.online.length) svg.append(svgElement("path", { class: "online-band", d: band(series.online) }));
  if (series.actual.length) svg.append(svgElement("path", { class: "actual", d: line(series.actual) }));
  if (series.forecast.length) svg.append(svgElement("path", { class: "forecast", d: line(series.forecast) }));
  if (series.online.length) svg.append(svgElement("path", { class: "online", d: line(series.online) }));
}
