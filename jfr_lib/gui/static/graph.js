// A flow's graph drawn as SVG: jobs in layers (parents above children), states coloured,
// drag to pan, wheel to zoom, click a job to open it. New states recolour the nodes in place;
// a changed set of jobs or links (a job added at run time) lays the graph out again.
"use strict";

const FlowGraph = (() => {
  const { h } = JFR;
  const W = 150, H = 38, GX = 24, GY = 48, PAD = 20;

  // Layers by longest path from the roots, then a few barycentre sweeps to shorten the links.
  function layout(nodes, edges) {
    const byId = new Map(nodes.map((n) => [n.id, { ...n, up: [], down: [], layer: 0 }]));
    for (const [a, b] of edges) {
      if (byId.has(a) && byId.has(b)) { byId.get(a).down.push(b); byId.get(b).up.push(a); }
    }
    const indeg = new Map([...byId.values()].map((n) => [n.id, n.up.length]));
    const queue = [...byId.values()].filter((n) => n.up.length === 0).map((n) => n.id);
    while (queue.length) {
      const n = byId.get(queue.shift());
      for (const c of n.down) {
        const child = byId.get(c);
        child.layer = Math.max(child.layer, n.layer + 1);
        indeg.set(c, indeg.get(c) - 1);
        if (indeg.get(c) === 0) queue.push(c);
      }
    }
    const layers = [];
    for (const n of [...byId.values()].sort((a, b) => a.id - b.id)) (layers[n.layer] ||= []).push(n);
    const pos = new Map();
    const place = () => layers.forEach((layer) => layer && layer.forEach((n, i) => pos.set(n.id, i)));
    place();
    const centre = (ids) => ids.length ? ids.reduce((s, i) => s + pos.get(i), 0) / ids.length : null;
    for (let sweep = 0; sweep < 4; sweep++) {
      const down = sweep % 2 === 0;
      const order = down ? layers : [...layers].reverse();
      for (const layer of order) {
        if (!layer) continue;
        const key = new Map(layer.map((n) => [n.id, centre(down ? n.up : n.down) ?? pos.get(n.id)]));
        layer.sort((a, b) => key.get(a.id) - key.get(b.id) || a.id - b.id);
        layer.forEach((n, i) => pos.set(n.id, i));
      }
    }
    const widest = Math.max(1, ...layers.map((l) => (l ? l.length : 0)));
    const out = new Map();
    layers.forEach((layer, li) => {
      if (!layer) return;
      const offset = ((widest - layer.length) * (W + GX)) / 2;
      layer.forEach((n, i) => out.set(n.id, { ...n, x: PAD + offset + i * (W + GX), y: PAD + li * (H + GY) }));
    });
    return { nodes: out, width: 2 * PAD + widest * (W + GX) - GX, height: 2 * PAD + layers.length * (H + GY) - GY };
  }

  function label(n) {
    const text = `${n.id} ${n.name ?? ""}`;
    return text.length > 21 ? `${text.slice(0, 20)}…` : text;
  }

  class Graph {
    constructor(holder) {
      this.holder = holder;
      this.key = null;
      this.view = { x: 0, y: 0, k: 1 };
      this.svg = h("svg", { class: "flow-graph", width: "100%", height: "560" });
      this.layer = h("g", {});
      this.svg.append(this.layer);
      holder.replaceChildren(
        h("div", { class: "graph-tools" },
          h("button", { type: "button", onclick: () => this.zoom(1.25) }, "+"),
          h("button", { type: "button", onclick: () => this.zoom(0.8) }, "−"),
          h("button", { type: "button", onclick: () => this.fit() }, "fit")),
        this.svg);
      this.interact();
    }

    interact() {
      let drag = null;
      this.svg.addEventListener("pointerdown", (e) => {
        if (e.target.closest(".node")) return;
        drag = { x: e.clientX, y: e.clientY, vx: this.view.x, vy: this.view.y };
        this.svg.setPointerCapture(e.pointerId);
        this.svg.classList.add("dragging");
      });
      this.svg.addEventListener("pointermove", (e) => {
        if (!drag) return;
        this.view.x = drag.vx + e.clientX - drag.x;
        this.view.y = drag.vy + e.clientY - drag.y;
        this.apply();
      });
      const end = () => { drag = null; this.svg.classList.remove("dragging"); };
      this.svg.addEventListener("pointerup", end);
      this.svg.addEventListener("pointercancel", end);
      this.svg.addEventListener("wheel", (e) => {
        e.preventDefault();
        const box = this.svg.getBoundingClientRect();
        this.zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - box.left, e.clientY - box.top);
      }, { passive: false });
    }

    zoom(factor, cx, cy) {
      const box = this.svg.getBoundingClientRect();
      cx = cx ?? box.width / 2;
      cy = cy ?? box.height / 2;
      const k = Math.min(4, Math.max(0.05, this.view.k * factor));
      this.view.x = cx - ((cx - this.view.x) * k) / this.view.k;
      this.view.y = cy - ((cy - this.view.y) * k) / this.view.k;
      this.view.k = k;
      this.apply();
    }

    fit() {
      const box = this.svg.getBoundingClientRect();
      const k = Math.min(1.5, (box.width || 800) / this.size.width, (box.height || 560) / this.size.height);
      this.view = { k, x: ((box.width || 800) - this.size.width * k) / 2, y: Math.max(0, ((box.height || 560) - this.size.height * k) / 2) };
      this.apply();
    }

    apply() {
      this.layer.setAttribute("transform", `translate(${this.view.x},${this.view.y}) scale(${this.view.k})`);
    }

    // data: {nodes: [{id, name, state, index, worker}], edges: [[from, to]]}
    update(data) {
      const key = JSON.stringify([data.nodes.map((n) => n.id), data.edges]);
      if (key !== this.key) {
        this.key = key;
        this.draw(data);
        return;
      }
      for (const n of data.nodes) {
        const g = this.layer.querySelector(`.node[data-id="${n.id}"]`);
        if (g && g.dataset.state !== n.state) {
          g.dataset.state = n.state;
          g.setAttribute("class", `node state-${n.state}`);
          g.querySelector("title").textContent = this.tip(n);
          g.querySelector(".node-state").textContent = n.state;
        }
      }
    }

    tip(n) {
      return `job ${n.id} ${n.name ?? ""} (index ${n.index}, worker ${n.worker}): ${n.state}`;
    }

    draw(data) {
      const first = !this.size;
      const { nodes, width, height } = layout(data.nodes, data.edges);
      this.size = { width, height };
      const links = h("g", { class: "links" });
      for (const [a, b] of data.edges) {
        const p = nodes.get(a), c = nodes.get(b);
        if (!p || !c) continue;
        const x1 = p.x + W / 2, y1 = p.y + H, x2 = c.x + W / 2, y2 = c.y, m = (y1 + y2) / 2;
        links.append(h("path", { d: `M${x1},${y1} C${x1},${m} ${x2},${m} ${x2},${y2}`, class: "link", "data-from": a, "data-to": b }));
      }
      const boxes = h("g", { class: "nodes" });
      for (const n of nodes.values()) {
        const g = h("g", { class: `node state-${n.state}`, "data-id": n.id, "data-state": n.state, transform: `translate(${n.x},${n.y})`,
          tabindex: 0, role: "link", onclick: () => { location.href = `/jobs/${n.id}`; },
          onkeydown: (e) => { if (e.key === "Enter") location.href = `/jobs/${n.id}`; },
          onmouseenter: () => this.highlight(n.id, true), onmouseleave: () => this.highlight(n.id, false) },
        h("title", { text: this.tip(n) }),
        h("rect", { width: W, height: H, rx: 6 }),
        h("text", { x: 8, y: 15, class: "node-name", text: label(n) }),
        h("text", { x: 8, y: 30, class: "node-state", text: n.state }));
        boxes.append(g);
      }
      this.layer.replaceChildren(links, boxes);
      if (first) this.fit();
    }

    highlight(id, on) {
      for (const el of this.layer.querySelectorAll(`.link[data-from="${id}"], .link[data-to="${id}"]`)) {
        el.classList.toggle("lit", on);
      }
    }
  }

  return { Graph, layout };
})();
