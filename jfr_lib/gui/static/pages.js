// The overview, the jobs and flows lists and the report: each redraws itself from the API.
"use strict";

(() => {
  const { h, get, poll, state, table, countsTable, fill, formParams, formFrom, pager, localTime, main } = JFR;
  const jobLink = (r) => h("a", { href: `/jobs/${r.db_id}`, text: r.db_id });

  function overview() {
    poll(async () => {
      const d = await get("/api/overview");
      fill("logins", ...d.logins.map((m) => h("p", { class: "warning login" },
        `worker ${m.worker} needs a login since ${localTime(new Date(m.since * 1000).toISOString())}: ${m.reason}`)));
      fill("states", h("p", { class: "total", text: `${d.jobs} jobs` }),
        countsTable(d.states, (s) => `/jobs?state=${encodeURIComponent(s)}`));
      fill("flow-states", h("p", { class: "total", text: `${d.n_flows} flows` }),
        countsTable(d.flow_states, (s) => `/flows?state=${encodeURIComponent(s)}`));
      const r = d.runner;
      const rows = [["status", h("span", { class: `runner runner-${r.status}`, text: r.status })]];
      for (const k of ["host", "pid", "user"]) if (r[k] !== undefined) rows.push([k, String(r[k])]);
      if (r.started_on) rows.push(["started", localTime(r.started_on)]);
      if (r.heartbeat_age !== undefined) rows.push(["heartbeat", `${r.heartbeat_age} s ago`]);
      if (r.stop_requested) rows.push(["stop", "requested"]);
      fill("runner", h("table", { class: "kv" }, rows.map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", {}, v)))));
      const states = [...new Set(Object.values(d.workers).flatMap((c) => Object.keys(c)))].sort();
      const workers = Object.entries(d.workers).map(([w, c]) => ({ worker: w, ...c }));
      fill("workers", table([{ key: "worker", title: "worker" },
        ...states.map((s) => ({ key: s, title: s, cell: (row) => row[s]
          ? h("a", { href: `/jobs?state=${s}&worker=${encodeURIComponent(row.worker)}`, text: row[s] }) : "" }))],
      workers, "no jobs"));
      fill("children", table([
        { key: "action", title: "process", cell: (c) => `${c.action}[${c.index}]` },
        { key: "pid", title: "pid" },
        { key: "doing", title: "doing", cell: (c) => c.job ? h("a", { href: `/jobs/${c.job}`, text: `job ${c.job}` })
          : (c.state || "") + (c.jobs !== undefined && c.jobs !== null ? ` (${c.jobs} jobs started warm)` : "") },
        { key: "since", title: "since", cell: (c) => localTime(c.since) },
      ], r.children || [], "no runner process"));
      document.getElementById("pilots-section").hidden = !d.pilots.length;
      fill("pilots", table([{ key: "id", title: "pilot" }, { key: "worker", title: "worker" },
        { key: "queue_id", title: "queue id" }, { key: "state", title: "state" }, { key: "jobs_done", title: "done" },
        { key: "running", title: "running" },
        { key: "time_left", title: "time left", cell: (p) => p.time_left == null ? "-" : `${Math.round(p.time_left)} s` }],
      d.pilots, "no pilot"));
    });
  }

  // A list page: the form's filters in the address bar, a page of rows redrawn by polling.
  function listPage(api, draw) {
    const form = document.getElementById("filters");
    const params = new URLSearchParams(location.search);
    formFrom(form, params);
    let page = parseInt(params.get("page") || "1", 10) || 1;
    const poller = poll(async () => {
      const p = formParams(form);
      p.set("page", page);
      const d = await get(`${api}?${p}`);
      page = d.page;
      history.replaceState(null, "", `?${p}`);
      pager("pager", d, (n) => { page = n; poller.now(); });
      draw(d);
    });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); page = 1; poller.now(); });
    form.addEventListener("change", () => { page = 1; poller.now(); });
  }

  function jobs() {
    listPage("/api/jobs", (d) => fill("jobs", table([
      { key: "db_id", title: "id", cell: jobLink },
      { key: "name", title: "name", cell: (r) => h("a", { href: `/jobs/${r.db_id}`, text: r.name ?? "-" }) },
      { key: "state", title: "state", cell: (r) => state(r.state) },
      { key: "worker", title: "worker" },
      { key: "priority", title: "prio" },
      { key: "queue_id", title: "queue id" },
      { key: "updated_on", title: "updated", cell: (r) => localTime(r.updated_on) },
      { key: "error", title: "error", cell: (r) => (r.error || "").split("\n")[0].slice(0, 120) },
    ], d.jobs, "no job matches", { id: "jobs-table" })));
  }

  function progress(f) {
    const done = f.states.COMPLETED || 0;
    const bad = (f.states.FAILED || 0) + (f.states.REMOTE_ERROR || 0);
    const n = f.n_jobs || 1;
    return h("span", { class: "progress", title: `${done} of ${f.n_jobs} completed, ${bad} failed` },
      h("progress", { max: n, value: done }), ` ${done}/${f.n_jobs}`, bad ? h("span", { class: "bad", text: ` ${bad} failed` }) : "");
  }

  function flows() {
    listPage("/api/flows", (d) => fill("flows", table([
      { key: "db_id", title: "id", cell: (r) => h("a", { href: `/flows/${r.db_id}`, text: r.db_id }) },
      { key: "name", title: "name", cell: (r) => h("a", { href: `/flows/${r.db_id}`, text: r.name ?? "-" }) },
      { key: "state", title: "state", cell: (r) => state(r.state) },
      { key: "progress", title: "progress", cell: progress },
      { key: "states", title: "jobs", cell: (r) => Object.entries(r.states).sort().map(([s, n]) => `${n} ${s}`).join(", ") },
      { key: "updated_on", title: "updated", cell: (r) => localTime(r.updated_on) },
    ], d.flows, "no flow matches", { id: "flows-table" })));
  }

  function plot(days) {
    const W = 760, H = 240, left = 40, bottom = 40, top = 12;
    const max = Math.max(1, ...days.map((d) => d.COMPLETED + d.FAILED));
    const step = (W - left - 10) / days.length;
    const bar = Math.max(2, step * 0.7);
    const y = (v) => H - bottom - (v / max) * (H - bottom - top);
    const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "jobs completed and failed per day" });
    for (const t of [0, max / 2, max]) {
      svg.append(h("line", { x1: left, x2: W - 5, y1: y(t), y2: y(t), class: "grid" }),
        h("text", { x: left - 6, y: y(t) + 4, class: "axis", "text-anchor": "end", text: Math.round(t) }));
    }
    days.forEach((d, i) => {
      const x = left + i * step + (step - bar) / 2;
      const g = h("g", { class: "day" }, h("title", { text: `${d.day}: ${d.COMPLETED} completed, ${d.FAILED} failed` }));
      g.append(h("rect", { x, width: bar, y: y(d.COMPLETED), height: y(0) - y(d.COMPLETED), class: "completed" }));
      g.append(h("rect", { x, width: bar, y: y(d.COMPLETED + d.FAILED), height: y(0) - y(d.FAILED), class: "failed" }));
      if (days.length <= 31 || i % Math.ceil(days.length / 15) === 0) {
        g.append(h("text", { x: x + bar / 2, y: H - bottom + 14, class: "axis", "text-anchor": "middle", text: d.day.slice(5) }));
      }
      svg.append(g);
    });
    svg.append(h("rect", { x: left, y: H - 16, width: 10, height: 10, class: "completed" }),
      h("text", { x: left + 14, y: H - 7, class: "axis", text: "completed" }),
      h("rect", { x: left + 90, y: H - 16, width: 10, height: 10, class: "failed" }),
      h("text", { x: left + 104, y: H - 7, class: "axis", text: "failed" }));
    return svg;
  }

  function report() {
    const form = document.getElementById("filters");
    formFrom(form, new URLSearchParams(location.search));
    const poller = poll(async () => {
      const p = formParams(form);
      const d = await get(`/api/report?${p}`);
      history.replaceState(null, "", `?${p}`);
      fill("plot", plot(d.days));
      fill("days", table([{ key: "day", title: "day" }, { key: "COMPLETED", title: "completed" },
        { key: "FAILED", title: "failed" }], [...d.days].reverse(), "no day"));
    });
    form.addEventListener("change", () => poller.now());
  }

  ({ overview, jobs, flows, report })[main.dataset.page]();
})();
