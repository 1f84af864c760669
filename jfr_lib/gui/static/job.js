// The job page: settings, inputs, error and traceback, output, run folder, and the actions its state allows.
"use strict";

(() => {
  const { h, get, poll, state, fill, localTime, actionButton, readOnly, main } = JFR;
  const id = main.dataset.item;
  let shown = null; // the state and actions last drawn: the buttons are redrawn only when they change

  function kv(obj) {
    const rows = Object.entries(obj).map(([k, v]) => {
      let text = typeof v === "object" ? JSON.stringify(v) : String(v);
      if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) text = localTime(v);
      return h("tr", {}, h("th", { text: k }), h("td", { text }));
    });
    return rows.length ? h("table", { class: "kv" }, rows) : h("p", { class: "empty", text: "none" });
  }

  function actions(d) {
    if (readOnly) return [];
    const a = d.actions;
    const path = (verb) => `/api/jobs/${id}/${verb}`;
    const after = () => { shown = null; poller.now(); };
    const out = [];
    for (const verb of ["retry", "pause", "resume", "stop"]) {
      if (a[verb]) {
        out.push(actionButton(verb, path(verb), {}, {
          after, confirm: verb === "stop" ? `Stop job ${id}? A submitted job is cancelled in its queue.` : null,
        }));
      }
    }
    if (a.rerun) {
      const force = h("input", { type: "checkbox", id: "rerun-force", checked: a.rerun_force });
      out.push(h("span", { class: "group" },
        actionButton("rerun", path("rerun"), () => ({ force: force.checked }), {
          after, confirm: (p) => p.force ? `Rerun job ${id} with --force? COMPLETED jobs below it are reset and their outputs removed.` : null,
        }),
        h("label", { title: "also reset COMPLETED jobs (--force)" }, force, " force")));
    }
    if (a.priority) {
      const value = h("input", { type: "number", id: "priority-value", value: d.priority ?? 0, step: 1, size: 5 });
      out.push(h("span", { class: "group" }, value,
        actionButton("set priority", path("priority"), () => ({ value: value.value }), { name: "priority", after })));
    }
    if (a.delete) {
      const output = h("input", { type: "checkbox", id: "delete-output" });
      const files = h("input", { type: "checkbox", id: "delete-files" });
      out.push(h("span", { class: "group" },
        actionButton("delete", path("delete"), () => ({ output: output.checked, files: files.checked }), {
          confirm: (p) => `Delete job ${id}${p.output ? " and its output" : ""}${p.files ? " and its run folder" : ""}? This cannot be undone.`,
          after: () => { location.href = "/jobs"; },
        }),
        h("label", {}, output, " output"), h("label", {}, files, " run folder")));
    }
    return out;
  }

  async function loadOutput() {
    const el = document.getElementById("output");
    el.hidden = false;
    try {
      el.textContent = (await get(`/api/jobs/${id}/output`)).output;
      el.classList.remove("bad");
    } catch (e) {
      el.textContent = e.message;
      el.classList.add("bad");
    }
  }

  async function loadFiles(name) {
    const holder = document.getElementById("files");
    try {
      const d = await get(`/api/jobs/${id}/files${name ? `?name=${encodeURIComponent(name)}` : ""}`);
      const parts = [];
      for (const [file, text] of Object.entries(d.tails)) {
        parts.push(h("h3", { text: `${file} (last ${d.lines} lines)` }),
          h("pre", { class: "tail", "data-file": file, text: text === null ? "(missing)" : text || "(empty)" }));
      }
      if (d.listing !== null) {
        parts.push(h("h3", { text: d.run_dir }), h("pre", { class: "listing", text: d.listing }));
        if (d.files.length) {
          parts.push(h("p", {}, "Show the end of: ",
            d.files.map((f) => h("button", { type: "button", class: "link", onclick: () => loadFiles(f) }, f))));
        }
      } else {
        parts.push(h("button", { type: "button", onclick: () => loadFiles() }, "back to queue.out and queue.err"));
      }
      holder.replaceChildren(...parts);
    } catch (e) {
      holder.replaceChildren(h("p", { class: "bad", text: e.message }));
    }
  }

  const poller = poll(async () => {
    let d;
    try {
      d = await get(`/api/jobs/${id}`);
    } catch (e) {
      if (e.status === 404) {
        fill("summary", h("p", { class: "bad", text: e.message }));
        fill("actions");
        return;
      }
      throw e;
    }
    document.title = `job ${d.db_id} ${d.name} · jfr`;
    fill("title", `Job ${d.db_id} `, h("span", { class: "name", text: d.name }), " ", state(d.state));
    fill("summary", h("p", {},
      `${d.function} on worker ${d.worker}, uuid ${d.uuid} index ${d.index}`,
      d.flow ? h("span", {}, " · flow ", h("a", { href: `/flows/${d.flow.db_id}`, text: `${d.flow.db_id} ${d.flow.name ?? ""}` }), " ", state(d.flow.state)) : ""));
    const key = JSON.stringify([d.state, d.actions, d.priority]);
    if (key !== shown) {
      shown = key;
      fill("actions", ...actions(d));
      if (d.state === "COMPLETED" && !document.getElementById("output").hidden) loadOutput();
    }
    document.getElementById("error-section").hidden = !(d.error || d.traceback);
    fill("error", d.error || "");
    fill("traceback", d.traceback || "(none)");
    fill("settings", kv(d.settings));
    fill("other", kv(d.other));
    fill("inputs", d.inputs);
    document.getElementById("load-files").disabled = !d.has_run_dir;
  });

  document.getElementById("load-output").addEventListener("click", loadOutput);
  document.getElementById("load-files").addEventListener("click", () => loadFiles());
})();
