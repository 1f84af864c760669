// The flow page: its counts per state, its actions, and its graph (FlowGraph), redrawn by polling.
"use strict";

(() => {
  const { h, get, poll, state, fill, countsTable, actionButton, readOnly, main } = JFR;
  const id = main.dataset.item;
  const graph = new FlowGraph.Graph(document.getElementById("graph"));
  let shown = null;

  poll(async () => {
    const d = await get(`/api/flows/${id}`);
    document.title = `flow ${d.db_id} ${d.name ?? ""} · jfr`;
    fill("title", `Flow ${d.db_id} `, h("span", { class: "name", text: d.name ?? "" }), " ", state(d.state));
    fill("summary", h("p", {}, `${d.n_jobs} jobs, uuid ${d.uuid} · `,
      h("a", { href: `/jobs?flow=${d.db_id}`, text: "its jobs" })), countsTable(d.states, (s) => `/jobs?flow=${d.db_id}&state=${s}`));
    const key = JSON.stringify([d.states.PAUSED || 0, d.n_jobs]);
    if (!readOnly && key !== shown) {
      shown = key;
      const output = h("input", { type: "checkbox", id: "delete-output" });
      const files = h("input", { type: "checkbox", id: "delete-files" });
      fill("actions",
        d.states.PAUSED ? actionButton("resume", `/api/flows/${id}/resume`, {}, { after: () => { shown = null; } }) : "",
        h("span", { class: "group" },
          actionButton("delete", `/api/flows/${id}/delete`, () => ({ output: output.checked, files: files.checked }), {
            confirm: `Delete flow ${id} and its ${d.n_jobs} jobs? This cannot be undone.`,
            after: () => { location.href = "/flows"; },
          }),
          h("label", {}, output, " outputs"), h("label", {}, files, " run folders")));
    }
    if (d.graph) {
      graph.update(d.graph);
    } else {
      fill("graph", h("p", { class: "empty" }, `${d.n_jobs} jobs: more than the ${d.graph_max} drawn; see `,
        h("a", { href: `/jobs?flow=${d.db_id}`, text: "its jobs" }), "."));
    }
    fill("legend", ...Object.keys(d.states).sort().map((s) => state(s)));
  });
})();
