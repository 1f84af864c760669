// Helpers shared by the dashboard's pages: building elements, reading the API, polling, actions.
// Text from the database is only ever set as text (never parsed as HTML).
"use strict";

const JFR = (() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrf = meta("jfr-csrf");
  const readOnly = meta("jfr-read-only") === "yes";
  const refreshMs = Math.max(1000, parseFloat(meta("jfr-refresh")) * 1000);
  const main = document.getElementById("main");

  // h("a", {href: "/jobs", class: "x", onclick: f}, "text", child...)
  function h(tag, attrs, ...children) {
    const svg = ["svg", "g", "rect", "path", "text", "line", "title", "circle", "polyline"].includes(tag);
    const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "text") el.textContent = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  async function request(path, options) {
    const response = await fetch(path, { credentials: "same-origin", cache: "no-store", ...options });
    let data;
    try {
      data = await response.json();
    } catch (e) {
      data = { error: `${response.status} ${response.statusText}` };
    }
    if (!response.ok) {
      const err = new Error(data.error || `${response.status} ${response.statusText}`);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  const get = (path) => request(path, { headers: { Accept: "application/json" } });
  const post = (path, body) => request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-JFR-CSRF": csrf },
    body: JSON.stringify(body || {}),
  });

  function status(text, bad) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.classList.toggle("bad", !!bad);
  }

  function message(text, bad) {
    const el = document.getElementById("message");
    el.replaceChildren(h("span", { class: "text", text }),
      h("button", { type: "button", class: "close", title: "close", onclick: () => { el.hidden = true; } }, "×"));
    el.classList.toggle("bad", !!bad);
    el.hidden = false;
  }

  // Calls `load` now and every few seconds while the page is visible; `now()` refreshes at once.
  function poll(load) {
    let timer = null;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      if (running) return;
      running = true;
      try {
        await load();
        status(`updated ${new Date().toLocaleTimeString()}`);
      } catch (e) {
        status(`not updated: ${e.message}`, true);
      } finally {
        running = false;
        if (!document.hidden) timer = setTimeout(tick, refreshMs);
      }
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
    tick();
    return { now: tick };
  }

  function localTime(iso) {
    if (!iso) return "-";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  const state = (s) => h("span", { class: `state state-${s}`, text: s });

  // columns: [{key, title, cell(row) -> node or text}]
  function table(columns, rows, empty, attrs) {
    if (!rows.length) return h("p", { class: "empty", text: empty || "nothing to show" });
    return h("table", attrs || {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { text: c.title })))),
      h("tbody", {}, rows.map((row) => h("tr", { "data-id": row.db_id },
        columns.map((c) => h("td", { class: c.key }, c.cell ? c.cell(row) : (row[c.key] ?? "-")))))));
  }

  function countsTable(counts, link) {
    const rows = Object.entries(counts).sort().map(([s, n]) => ({ state: s, n }));
    return table([
      { key: "state", title: "state", cell: (r) => link ? h("a", { href: link(r.state) }, state(r.state)) : state(r.state) },
      { key: "n", title: "count" },
    ], rows, "none");
  }

  function fill(id, ...nodes) {
    document.getElementById(id).replaceChildren(...nodes);
  }

  // The form's values <-> the page's query string (so a filtered page can be bookmarked or reloaded).
  function formParams(form) {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v !== "") params.set(k, v);
    return params;
  }

  function formFrom(form, params) {
    for (const el of form.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
  }

  function pager(id, data, go) {
    const el = document.getElementById(id);
    const what = data.jobs ? "jobs" : "flows";
    el.replaceChildren(
      h("button", { type: "button", class: "prev", disabled: data.page <= 1, onclick: () => go(data.page - 1) }, "‹ previous"),
      h("span", { class: "where", text: `page ${data.page} of ${data.pages} (${data.total} ${what})` }),
      h("button", { type: "button", class: "next", disabled: data.page >= data.pages, onclick: () => go(data.page + 1) }, "next ›"));
  }

  // A button that runs an action: confirms when asked, shows the answer, then calls `after`.
  function actionButton(label, path, body, opts) {
    opts = opts || {};
    return h("button", {
      type: "button", class: `action action-${opts.name || label}`, "data-action": opts.name || label,
      onclick: async (ev) => {
        const payload = typeof body === "function" ? body() : body;
        const question = typeof opts.confirm === "function" ? opts.confirm(payload) : opts.confirm;
        if (question && !window.confirm(question)) return;
        ev.target.disabled = true;
        try {
          const answer = await post(path, payload);
          message(answer.message);
          if (opts.after) opts.after(answer);
        } catch (e) {
          message(`jfr: error: ${e.message}`, true);
        } finally {
          ev.target.disabled = false;
        }
      },
    }, label);
  }

  return {
    h, get, post, poll, status, message, localTime, state, table, countsTable, fill, formParams, formFrom,
    pager, actionButton, readOnly, main,
    workers: (main.dataset.workers || "").split(",").filter(Boolean),
  };
})();
