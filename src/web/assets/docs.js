// Interactive docs of /openapi.json: one form per operation, sent with fetch.
"use strict";

const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("storecast.token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("storecast.token", tokenInput.value));

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function operationForm(path, method, operation) {
  const section = element("details", { class: "operation" });
  section.append(element("summary", {}, element("code", { class: "method " + method }, method.toUpperCase()), " ", element("code", {}, path), " ", operation.summary || ""));
  if (operation.description) section.append(element("p", {}, operation.description));
  const form = element("form");
  const inputs = [];
  for (const parameter of operation.parameters || []) {
    const input = element("input", { name: parameter.name, placeholder: parameter.example ?? parameter.schema?.default ?? "" });
    if (parameter.example !== undefined) input.value = parameter.example;
    inputs.push([parameter, input]);
    form.append(element("label", {}, `${parameter.name} (${parameter.in}) `, input));
  }
  let body = null;
  const content = operation.requestBody?.content?.["application/json"];
  if (content) {
    body = element("textarea", { rows: 6 });
    body.value = JSON.stringify(content.example ?? {}, null, 2);
    form.append(element("label", {}, "JSON body", body));
  }
  const output = element("pre", { class: "output" });
  form.append(element("button", { type: "submit" }, "Send"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    for (const [parameter, input] of inputs) {
      if (input.value === "") continue;
      if (parameter.in === "path") url = url.replace(`{${parameter.name}}`, encodeURIComponent(input.value));
      else query.set(parameter.name, input.value);
    }
    if ([...query].length) url += "?" + query;
    const headers = {};
    if (tokenInput.value) headers.Authorization = "Bearer " + tokenInput.value;
    if (body) headers["Content-Type"] = "application/json";
    output.textContent = `${method.toUpperCase()} ${url} …`;
    const started = performance.now();
    try {
      const response = await fetch(url, { method: method.toUpperCase(), headers, body: body ? body.value : undefined });
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      output.textContent = `${response.status} ${response.statusText} in ${Math.round(performance.now() - started)} ms\n\n${shown}`;
    } catch (error) {
      output.textContent = `request failed: ${error}`;
    }
  });
  section.append(form, output);
  return section;
}

async function main() {
  const target = document.getElementById("operations");
  try {
    const document_ = await (await fetch("/openapi.json")).json();
    document.getElementById("description").textContent = document_.info.description;
    target.replaceChildren();
    for (const [path, methods] of Object.entries(document_.paths)) {
      for (const [method, operation] of Object.entries(methods)) target.append(operationForm(path, method, operation));
    }
  } catch (error) {
    target.textContent = `cannot read /openapi.json: ${error}`;
  }
}

main();
