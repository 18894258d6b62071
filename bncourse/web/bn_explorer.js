// The BatchNorm explorer: BN on one channel, simulated in the browser with torch's rules, drawn as plain SVG.
//
// One ES module serves both places the explorer appears:
//   * the website: the page holds <div data-bn-explorer data-values="{...}">; importing this module mounts
//     every such element (the book's Sphinx extension adds the module to those pages);
//   * Jupyter: the default export is an anywidget ({render}) used by bncourse.widgets.bn_explorer().
// `simulate` is the math alone (no DOM): tests run it in Node and compare it with bncourse.numpy.
//
// Rules (torch.nn.BatchNorm1d in float64): training mode normalizes with the batch mean and the biased batch
// variance; running_mean and running_var start at 0 and 1 and move by
//   running = (1 - momentum) * running + momentum * batch_statistic,
// with the unbiased batch variance for running_var; evaluation mode normalizes with the running statistics.
// The input is shift + scale * z, with z standard normal from a seeded generator: a reload draws the same batches.
//
// Interface for tests: the root has data-bn-explorer; its controls are <input type="range"> named batch_size,
// momentum, gamma, beta, eps, shift, scale, steps (eps's range holds log10(eps), data-scale="log10"); after
// every input event the root's data-state holds the JSON of `summary` (the eight values as used, the running
// statistics, and the means and biased standard deviations of the outputs and the held-out input).

export const DEFAULTS = Object.freeze({
  batch_size: 8, momentum: 0.1, gamma: 1, beta: 0, eps: 1e-5, shift: 3, scale: 2, steps: 30,
});

// name, label, min, max, step (in slider units), to value, from value, display
const CONTROLS = [
  ["batch_size", "batch size m", 2, 64, 1, (v) => Math.round(v), (v) => v, (v) => String(v)],
  ["momentum", "momentum (weight of the new batch)", 0, 1, 0.01, (v) => v, (v) => v, (v) => v.toFixed(2)],
  ["gamma", "γ (scale)", -3, 3, 0.1, (v) => v, (v) => v, (v) => v.toFixed(1)],
  ["beta", "β (shift)", -3, 3, 0.1, (v) => v, (v) => v, (v) => v.toFixed(1)],
  ["eps", "ε", -8, 0, 0.5, (v) => clean(Math.pow(10, v)), (v) => Math.log10(v), (v) => v.toExponential(1)],
  ["shift", "input mean (shift)", -5, 5, 0.1, (v) => v, (v) => v, (v) => v.toFixed(1)],
  ["scale", "input std (scale)", 0.1, 5, 0.1, (v) => v, (v) => v, (v) => v.toFixed(1)],
  ["steps", "training steps", 1, 200, 1, (v) => Math.round(v), (v) => v, (v) => String(v)],
];
export const NAMES = CONTROLS.map((c) => c[0]);
export const SEED = 2015;          // the batches' generator
export const EVAL_SEED = 2016;     // the held-out sample's generator
export const EVAL_SIZE = 1000;

function clean(x) { return parseFloat(x.toPrecision(12)); }

// mulberry32: a small seeded 32-bit generator, uniform in [0, 1)
export function uniform(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// standard normal draws (Box-Muller, one value per pair of uniforms)
export function normal(seed) {
  const u = uniform(seed);
  return function () {
    const u1 = 1 - u();  // (0, 1]: log is finite
    const u2 = u();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

function mean(xs) { let s = 0; for (const x of xs) s += x; return s / xs.length; }
function biasedVar(xs, mu) { let s = 0; for (const x of xs) s += (x - mu) * (x - mu); return s / xs.length; }

// Check and complete the parameters; bad values raise with the name of the parameter.
export function checkParams(params) {
  const p = { ...DEFAULTS, ...(params || {}) };
  for (const name of NAMES) {
    if (typeof p[name] !== "number" || !Number.isFinite(p[name])) throw new Error(`${name} must be a finite number, got ${p[name]}`);
  }
  if (!Number.isInteger(p.batch_size) || p.batch_size < 2) throw new Error(`batch_size must be an integer >= 2 (training mode needs more than 1 value per channel), got ${p.batch_size}`);
  if (!Number.isInteger(p.steps) || p.steps < 1) throw new Error(`steps must be an integer >= 1, got ${p.steps}`);
  if (p.momentum < 0 || p.momentum > 1) throw new Error(`momentum must be in [0, 1], got ${p.momentum}`);
  if (p.eps <= 0) throw new Error(`eps must be > 0, got ${p.eps}`);
  if (p.scale <= 0) throw new Error(`scale must be > 0, got ${p.scale}`);
  return p;
}

// BN on one channel: `steps` training batches, then the held-out sample in evaluation mode.
// Returns every intermediate the drawing and the tests need; `summary` is what data-state holds.
export function simulate(params) {
  const p = checkParams(params);
  const z = normal(p.seed === undefined ? SEED : p.seed);
  const m = p.batch_size;
  let rm = 0, rv = 1;
  const batches = [], trace_mean = [rm], trace_var = [rv];
  let last = null;
  for (let t = 0; t < p.steps; t++) {
    const x = new Array(m);
    for (let i = 0; i < m; i++) x[i] = p.shift + p.scale * z();
    const mu = mean(x);
    const v = biasedVar(x, mu);
    rm = (1 - p.momentum) * rm + p.momentum * mu;
    rv = (1 - p.momentum) * rv + p.momentum * (v * m / (m - 1));
    batches.push(x);
    trace_mean.push(rm);
    trace_var.push(rv);
    last = { x, mu, v };
  }
  const inv = 1 / Math.sqrt(last.v + p.eps);
  const train_out = last.x.map((xi) => p.gamma * (xi - last.mu) * inv + p.beta);
  const ze = normal(p.eval_seed === undefined ? EVAL_SEED : p.eval_seed);
  const eval_in = new Array(EVAL_SIZE);
  for (let i = 0; i < EVAL_SIZE; i++) eval_in[i] = p.shift + p.scale * ze();
  const inv_eval = 1 / Math.sqrt(rv + p.eps);
  const eval_out = eval_in.map((xi) => p.gamma * (xi - rm) * inv_eval + p.beta);
  const stats = (xs) => { const mu = mean(xs); return [mu, Math.sqrt(biasedVar(xs, mu))]; };
  const [tom, tos] = stats(train_out), [eim, eis] = stats(eval_in), [eom, eos] = stats(eval_out);
  const summary = {};
  for (const name of NAMES) summary[name] = p[name];
  Object.assign(summary, {
    running_mean: rm, running_var: rv,
    train_out_mean: tom, train_out_std: tos,
    eval_in_mean: eim, eval_in_std: eis, eval_out_mean: eom, eval_out_std: eos,
  });
  return { params: p, batches, batch_mean: last.mu, batch_var: last.v, train_out, eval_in, eval_out,
           trace_mean, trace_var, summary };
}

// ----- drawing ------------------------------------------------------------------------------------------
const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function h(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
const fmt = (x) => (Math.abs(x) >= 1000 || (x !== 0 && Math.abs(x) < 0.01) ? x.toExponential(2) : x.toFixed(3));

function niceRange(lo, hi) {
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 4)));
  const k = (hi - lo) / step > 20 ? 5 : (hi - lo) / step > 8 ? 2 : 1;
  return [Math.floor(lo / (k * step)) * k * step, Math.ceil(hi / (k * step)) * k * step, k * step];
}

function axis(g, x0, x1, y, lo, hi, tick) {
  const X = (v) => x0 + (x1 - x0) * (v - lo) / (hi - lo);
  g.appendChild(s("line", { x1: x0, x2: x1, y1: y, y2: y, class: "bnx-axis" }));
  for (let v = lo; v <= hi + tick / 2; v += tick) {
    const xv = X(v);
    g.appendChild(s("line", { x1: xv, x2: xv, y1: y, y2: y + 4, class: "bnx-axis" }));
    g.appendChild(s("text", { x: xv, y: y + 15, class: "bnx-tick" }, String(clean(v))));
  }
  return X;
}

function histogram(xs, lo, hi, bins) {
  const counts = new Array(bins).fill(0);
  for (const x of xs) {
    const b = Math.floor((x - lo) / (hi - lo) * bins);
    if (b >= 0 && b < bins) counts[b]++;
  }
  return counts;
}

function drawModes(svg, r) {
  svg.replaceChildren();
  const p = r.params, W = 680;
  const inLo = Math.min(p.shift - 4 * p.scale, ...r.batches[r.batches.length - 1]);
  const inHi = Math.max(p.shift + 4 * p.scale, ...r.batches[r.batches.length - 1]);
  const ag = Math.abs(p.gamma);
  const so = r.summary;
  const outLo = Math.min(p.beta - 3.5 * ag, so.eval_out_mean - 3.5 * so.eval_out_std, ...r.train_out, p.beta - 1);
  const outHi = Math.max(p.beta + 3.5 * ag, so.eval_out_mean + 3.5 * so.eval_out_std, ...r.train_out, p.beta + 1);
  const [ilo, ihi, itick] = niceRange(inLo, inHi);
  const [olo, ohi, otick] = niceRange(outLo, outHi);
  const panels = [[20, 320, "training mode: the last batch (batch statistics)"],
                  [360, 660, "evaluation mode: held-out sample (running statistics)"]];
  panels.forEach(([x0, x1, title], k) => {
    const g = s("g", {});
    svg.appendChild(g);
    g.appendChild(s("text", { x: x0, y: 14, class: "bnx-title" }, title));
    g.appendChild(s("text", { x: x0, y: 34, class: "bnx-label" }, "input x"));
    g.appendChild(s("text", { x: x0, y: 164, class: "bnx-label" }, "output y"));
    const Xi = axis(g, x0, x1, 100, ilo, ihi, itick);
    const Xo = axis(g, x0, x1, 230, olo, ohi, otick);
    // what training mode delivers: mean β, std |γ|
    g.appendChild(s("rect", { x: Xo(p.beta - ag), width: Math.max(1, Xo(p.beta + ag) - Xo(p.beta - ag)),
                              y: 170, height: 60, class: "bnx-band" }));
    g.appendChild(s("line", { x1: Xo(p.beta), x2: Xo(p.beta), y1: 166, y2: 230, class: "bnx-target" }));
    if (k === 0) {
      r.batches[r.batches.length - 1].forEach((xi, i) => {
        const yo = r.train_out[i];
        g.appendChild(s("line", { x1: Xi(xi), y1: 96, x2: Xo(yo), y2: 206, class: "bnx-link" }));
        g.appendChild(s("circle", { cx: Xi(xi), cy: 92, r: 4, class: "bnx-dot-in" }));
        g.appendChild(s("circle", { cx: Xo(yo), cy: 212, r: 4, class: "bnx-dot-out" }));
      });
    } else {
      const bins = 40;
      const hin = histogram(r.eval_in, ilo, ihi, bins), hout = histogram(r.eval_out, olo, ohi, bins);
      const top = Math.max(...hin, ...hout, 1);
      hin.forEach((c, b) => c && g.appendChild(s("rect", { x: x0 + (x1 - x0) * b / bins, width: (x1 - x0) / bins - 1,
        y: 100 - 55 * c / top, height: 55 * c / top, class: "bnx-bar-in" })));
      hout.forEach((c, b) => c && g.appendChild(s("rect", { x: x0 + (x1 - x0) * b / bins, width: (x1 - x0) / bins - 1,
        y: 230 - 55 * c / top, height: 55 * c / top, class: "bnx-bar-out" })));
      // the statistics evaluation mode normalizes with
      g.appendChild(s("line", { x1: Xi(so.running_mean), x2: Xi(so.running_mean), y1: 40, y2: 100, class: "bnx-running" }));
      g.appendChild(s("text", { x: Math.min(Math.max(Xi(so.running_mean), x0 + 40), x1 - 40), y: 50,
                                class: "bnx-note" }, "running mean"));
    }
  });
  svg.setAttribute("viewBox", `0 0 ${W} 250`);
}

function drawTraces(svg, r) {
  svg.replaceChildren();
  const p = r.params;
  const plots = [[20, 320, r.trace_mean, p.shift, "running_mean", "true mean"],
                 [360, 660, r.trace_var, p.scale * p.scale, "running_var", "true variance"]];
  for (const [x0, x1, ys, truth, title, tname] of plots) {
    const g = s("g", {});
    svg.appendChild(g);
    g.appendChild(s("text", { x: x0, y: 14, class: "bnx-title" }, `${title} over the training steps`));
    const [lo, hi, tick] = niceRange(Math.min(...ys, truth, 0), Math.max(...ys, truth));
    const Y = (v) => 170 - 140 * (v - lo) / (hi - lo);
    const n = ys.length - 1;
    const X = (t) => x0 + 30 + (x1 - x0 - 30) * t / Math.max(n, 1);
    g.appendChild(s("line", { x1: x0 + 30, x2: x0 + 30, y1: 30, y2: 170, class: "bnx-axis" }));
    for (let v = lo; v <= hi + tick / 2; v += tick) {
      g.appendChild(s("text", { x: x0 + 26, y: Y(v) + 4, class: "bnx-tick bnx-right" }, String(clean(v))));
    }
    g.appendChild(s("line", { x1: x0 + 30, x2: x1, y1: 170, y2: 170, class: "bnx-axis" }));
    g.appendChild(s("text", { x: x0 + 30, y: 185, class: "bnx-tick" }, "0"));
    g.appendChild(s("text", { x: x1, y: 185, class: "bnx-tick" }, String(n)));
    g.appendChild(s("text", { x: (x0 + x1) / 2 + 15, y: 196, class: "bnx-tick" }, "step"));
    g.appendChild(s("line", { x1: x0 + 30, x2: x1, y1: Y(truth), y2: Y(truth), class: "bnx-truth" }));
    g.appendChild(s("text", { x: x1, y: Y(truth) - 4, class: "bnx-note bnx-right" }, tname));
    const pts = ys.map((v, t) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join(" ");
    g.appendChild(s("polyline", { points: pts, class: "bnx-trace" }));
  }
  svg.setAttribute("viewBox", "0 0 680 200");
}

const CSS = `
.bnx{--bnx-fg:var(--pst-color-text-base,var(--jp-ui-font-color1,#222));--bnx-muted:var(--pst-color-text-muted,var(--jp-ui-font-color2,#555));
 --bnx-a:var(--pst-color-primary,#1c6aa8);--bnx-b:var(--pst-color-secondary,#b34d00);--bnx-line:var(--pst-color-border,#bbb);
 color:var(--bnx-fg);border:1px solid var(--bnx-line);border-radius:6px;padding:.8em 1em;margin:1em 0;font-size:.95em}
.bnx .bnx-controls{display:grid;grid-template-columns:max-content minmax(8em,1fr) 5em;gap:.25em .8em;align-items:center}
.bnx label{margin:0}
.bnx output{font-variant-numeric:tabular-nums}
.bnx input[type=range]{width:100%;accent-color:var(--bnx-a)}
.bnx input[type=range]:focus-visible{outline:3px solid var(--pst-color-accent,#c2410c);outline-offset:2px}
.bnx svg{width:100%;height:auto;display:block;margin-top:.6em}
.bnx svg text{fill:var(--bnx-fg);font-size:11px;font-family:inherit}
.bnx .bnx-title{font-weight:600}
.bnx .bnx-tick{text-anchor:middle;fill:var(--bnx-muted)}
.bnx .bnx-right{text-anchor:end}
.bnx .bnx-axis{stroke:var(--bnx-muted);stroke-width:1}
.bnx .bnx-band{fill:var(--bnx-b);opacity:.15}
.bnx .bnx-target{stroke:var(--bnx-b);stroke-dasharray:4 3}
.bnx .bnx-link{stroke:var(--bnx-line)}
.bnx .bnx-dot-in,.bnx .bnx-bar-in{fill:var(--bnx-a)}
.bnx .bnx-dot-out,.bnx .bnx-bar-out{fill:var(--bnx-b)}
.bnx .bnx-running{stroke:var(--bnx-fg);stroke-dasharray:3 2}
.bnx .bnx-truth{stroke:var(--bnx-muted);stroke-dasharray:5 4}
.bnx .bnx-trace{fill:none;stroke:var(--bnx-a);stroke-width:2}
.bnx .bnx-summary{margin:.6em 0 0 0}
.bnx .bnx-error{color:var(--pst-color-danger,#b00020)}
`;

let instances = 0;

// Build the explorer inside `root` with the given starting values; `onChange(summary)` after every update.
export function mount(root, values, onChange) {
  const id = `bnx-${++instances}`;
  const start = checkParams(values);
  root.classList.add("bnx");
  root.setAttribute("data-bn-explorer", "");
  root.setAttribute("data-bn-mounted", "");
  const style = h("style", {}, CSS);
  const form = h("div", { class: "bnx-controls", role: "group", "aria-label": "BatchNorm explorer settings" });
  const inputs = {};
  for (const [name, label, min, max, step, , from, show] of CONTROLS) {
    const inputId = `${id}-${name}`;
    const input = h("input", { type: "range", id: inputId, name, min, max, step });
    if (name === "eps") input.setAttribute("data-scale", "log10");
    input.value = String(from(start[name]));
    const out = h("output", { for: inputId, id: `${inputId}-value` }, show(start[name]));
    form.append(h("label", { for: inputId }, label), input, out);
    inputs[name] = [input, out];
  }
  const modes = s("svg", { role: "img", "aria-labelledby": `${id}-modes-desc` });
  const traces = s("svg", { role: "img", "aria-labelledby": `${id}-traces-desc` });
  const modesDesc = h("p", { id: `${id}-modes-desc`, class: "bnx-summary" });
  const tracesDesc = h("p", { id: `${id}-traces-desc`, class: "bnx-summary" });
  root.replaceChildren(style, form, modes, modesDesc, traces, tracesDesc);

  function read() {
    const v = {};
    for (const [name, , , , , to] of CONTROLS) v[name] = to(parseFloat(inputs[name][0].value));
    return v;
  }
  function update() {
    let r;
    try {
      r = simulate(read());
    } catch (err) {
      modesDesc.textContent = String(err.message || err);
      modesDesc.className = "bnx-summary bnx-error";
      return;
    }
    const sm = r.summary;
    for (const [name, , , , , , , show] of CONTROLS) {
      inputs[name][1].textContent = show(sm[name]);
      inputs[name][0].setAttribute("aria-valuetext", show(sm[name]));
    }
    drawModes(modes, r);
    drawTraces(traces, r);
    modesDesc.className = "bnx-summary";
    modesDesc.textContent =
      `Training mode, last batch of ${sm.batch_size}: batch mean ${fmt(r.batch_mean)}, batch variance (biased) ` +
      `${fmt(r.batch_var)}; outputs have mean ${fmt(sm.train_out_mean)} and std ${fmt(sm.train_out_std)} ` +
      `(β = ${fmt(sm.beta)}, |γ| = ${fmt(Math.abs(sm.gamma))}). Evaluation mode, ${EVAL_SIZE} held-out inputs ` +
      `(mean ${fmt(sm.eval_in_mean)}, std ${fmt(sm.eval_in_std)}) normalized with the running statistics: ` +
      `outputs have mean ${fmt(sm.eval_out_mean)} and std ${fmt(sm.eval_out_std)}, a train/eval gap of ` +
      `${fmt(sm.eval_out_mean - sm.beta)} in the mean and a std ratio of ` +
      `${fmt(sm.eval_out_std / Math.max(sm.train_out_std, 1e-300))}.`;
    tracesDesc.textContent =
      `After ${sm.steps} steps with momentum ${sm.momentum}: running_mean ${fmt(sm.running_mean)} ` +
      `(true mean ${fmt(sm.shift)}), running_var ${fmt(sm.running_var)} (true variance ${fmt(sm.scale * sm.scale)}). ` +
      `They started at 0 and 1.`;
    root.setAttribute("data-state", JSON.stringify(sm));
    if (onChange) onChange(sm);
  }
  form.addEventListener("input", update);
  update();
  return { update, inputs };
}

function parseValues(el) {
  try { return JSON.parse(el.getAttribute("data-values") || "{}"); } catch (e) { return {}; }
}

export function mountAll(doc) {
  for (const el of doc.querySelectorAll("[data-bn-explorer]:not([data-bn-mounted])")) mount(el, parseValues(el));
}

// anywidget: the values come from the Python side; the summary goes back to it (`widget.state`)
export default {
  render({ model, el }) {
    const root = document.createElement("div");
    el.appendChild(root);
    mount(root, model.get("values"), (summary) => { model.set("state", summary); model.save_changes(); });
  },
};

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => mountAll(document));
  else mountAll(document);
}
