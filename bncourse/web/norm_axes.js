// The axes picker: which entries of an N×C×H×W block share their mean and variance with one chosen entry,
// for BatchNorm (bn), LayerNorm (ln), InstanceNorm (in) and GroupNorm (gn), drawn as plain SVG.
//
// One ES module for the website (the page holds <div data-norm-axes data-values="{...}">, mounted on import)
// and for Jupyter (the default export is an anywidget, used by bncourse.widgets.norm_axes()).
// `sharedMask` is the rule alone (no DOM); tests compare it with bncourse.beyond.shared_statistics_mask.
//
// Interface for tests: the root has data-norm-axes; a <select name="kind"> (bn, ln, in, gn), a range named
// groups (snapped to a divisor of C), ranges named sample and channel (the chosen entry is
// (sample, channel, 0, 0)); after every input event data-state holds {kind, groups, shape, sample, channel,
// shared_with_first, shared_with_chosen, values_per_statistic}.

export const KINDS = ["bn", "ln", "in", "gn"];
const NAMES = { bn: "BatchNorm", ln: "LayerNorm", in: "InstanceNorm", gn: "GroupNorm" };
const POOLS = {
  bn: "every sample and every position of the chosen channel",
  ln: "every channel and every position of the chosen sample",
  in: "every position of the chosen channel of the chosen sample",
  gn: "every position of the chosen sample's channels in the chosen channel's group",
};

export function checkValues(values) {
  const v = { kind: "bn", groups: 2, shape: [3, 4, 2, 2], sample: 0, channel: 0, ...(values || {}) };
  if (!KINDS.includes(v.kind)) throw new Error(`unknown normalization ${v.kind}; expected one of ${KINDS.join(", ")}`);
  if (!Array.isArray(v.shape) || v.shape.length !== 4 || !v.shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new Error(`shape must be four positive sizes (N, C, H, W), got ${JSON.stringify(v.shape)}`);
  }
  const c = v.shape[1];
  if (!Number.isInteger(v.groups) || v.groups < 1 || c % v.groups) {
    throw new Error(`num_channels (${c}) must be divisible by num_groups (${v.groups})`);
  }
  if (!(Number.isInteger(v.sample) && v.sample >= 0 && v.sample < v.shape[0])) throw new Error(`sample out of range: ${v.sample}`);
  if (!(Number.isInteger(v.channel) && v.channel >= 0 && v.channel < c)) throw new Error(`channel out of range: ${v.channel}`);
  return v;
}

// mask[n][c]: does (n, c, h, w) share statistics with (sample, channel, 0, 0)? (every layer pools over H, W)
export function sharedMask(kind, n, c, groups, sample, channel) {
  const size = c / groups;
  const mask = [];
  for (let i = 0; i < n; i++) {
    const row = [];
    for (let j = 0; j < c; j++) {
      const sameS = i === sample, sameC = j === channel;
      row.push(kind === "bn" ? sameC : kind === "ln" ? sameS : kind === "in" ? sameS && sameC
        : sameS && Math.floor(j / size) === Math.floor(channel / size));
    }
    mask.push(row);
  }
  return mask;
}

export function summarize(values) {
  const v = checkValues(values);
  const [n, c, hh, ww] = v.shape;
  const count = (m) => m.flat().filter(Boolean).length * hh * ww;
  const chosen = sharedMask(v.kind, n, c, v.groups, v.sample, v.channel);
  return {
    mask: chosen,
    summary: {
      kind: v.kind, groups: v.groups, shape: [n, c, hh, ww], sample: v.sample, channel: v.channel,
      shared_with_first: count(sharedMask(v.kind, n, c, v.groups, 0, 0)),
      shared_with_chosen: count(chosen),
      values_per_statistic: count(chosen),
    },
  };
}

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

const CSS = `
.bna{--bna-fg:var(--pst-color-text-base,var(--jp-ui-font-color1,#222));--bna-muted:var(--pst-color-text-muted,var(--jp-ui-font-color2,#555));
 --bna-a:var(--pst-color-primary,#1c6aa8);--bna-line:var(--pst-color-border,#bbb);--bna-bg:var(--pst-color-surface,var(--jp-layout-color2,#eee));
 color:var(--bna-fg);border:1px solid var(--bna-line);border-radius:6px;padding:.8em 1em;margin:1em 0;font-size:.95em}
.bna .bna-controls{display:grid;grid-template-columns:max-content minmax(8em,1fr) 4em;gap:.25em .8em;align-items:center}
.bna label{margin:0}
.bna select,.bna input[type=range]{width:100%;accent-color:var(--bna-a)}
.bna select{color:inherit;background:var(--pst-color-background,#fff);border:1px solid var(--bna-line);border-radius:4px;padding:.1em .3em}
.bna select:focus-visible,.bna input[type=range]:focus-visible{outline:3px solid var(--pst-color-accent,#c2410c);outline-offset:2px}
.bna svg{width:100%;height:auto;display:block;margin-top:.6em}
.bna svg text{fill:var(--bna-fg);font-size:11px;font-family:inherit}
.bna .bna-cell{fill:var(--bna-bg);stroke:var(--bna-line)}
.bna .bna-on{fill:var(--bna-a);opacity:.75}
.bna .bna-chosen{stroke:var(--bna-fg);stroke-width:2.5}
.bna .bna-note{margin:.5em 0 0 0}
`;

let instances = 0;

export function mount(root, values, onChange) {
  const id = `bna-${++instances}`;
  const start = checkValues(values);
  const [n, c] = start.shape;
  root.classList.add("bna");
  root.setAttribute("data-norm-axes", "");
  root.setAttribute("data-norm-mounted", "");
  const form = h("div", { class: "bna-controls", role: "group", "aria-label": "normalization axes settings" });
  const kind = h("select", { name: "kind", id: `${id}-kind` });
  for (const k of KINDS) kind.appendChild(h("option", { value: k }, `${NAMES[k]} (${k})`));
  kind.value = start.kind;
  const ranges = {};
  const row = (name, label, min, max, value) => {
    const input = h("input", { type: "range", name, id: `${id}-${name}`, min, max, step: 1 });
    input.value = String(value);
    const out = h("output", { for: `${id}-${name}` }, String(value));
    form.append(h("label", { for: `${id}-${name}` }, label), input, out);
    ranges[name] = [input, out];
  };
  form.append(h("label", { for: `${id}-kind` }, "normalization"), kind, h("span"));
  row("groups", "groups G (GroupNorm only)", 1, c, start.groups);
  row("sample", "chosen sample n", 0, n - 1, start.sample);
  row("channel", "chosen channel c", 0, c - 1, start.channel);
  const svg = s("svg", { role: "img", "aria-labelledby": `${id}-desc` });
  const desc = h("p", { id: `${id}-desc`, class: "bna-note" });
  root.replaceChildren(h("style", {}, CSS), form, svg, desc);
  let lastGroups = start.groups;

  function snapGroups() {
    const input = ranges.groups[0];
    let g = parseInt(input.value, 10);
    if (c % g) {  // not a divisor of C: move on, in the direction the reader moved, to the next divisor
      const dir = g > lastGroups ? 1 : -1;
      while (g >= 1 && g <= c && c % g) g += dir;
      if (g < 1 || g > c) g = lastGroups;
      input.value = String(g);
    }
    lastGroups = g;
    return g;
  }

  function update() {
    const v = { ...start, kind: kind.value, groups: snapGroups(),
                sample: parseInt(ranges.sample[0].value, 10), channel: parseInt(ranges.channel[0].value, 10) };
    const { mask, summary } = summarize(v);
    for (const name of ["groups", "sample", "channel"]) ranges[name][1].textContent = String(summary[name]);
    draw(svg, summary, mask);
    const [N, C, H, W] = summary.shape;
    desc.textContent =
      `${NAMES[v.kind]}${v.kind === "gn" ? ` with ${v.groups} groups` : ""} on an input of shape ` +
      `(${N}, ${C}, ${H}, ${W}): the entry (${v.sample}, ${v.channel}, 0, 0) shares its mean and variance with ` +
      `${POOLS[v.kind]}, ${summary.values_per_statistic} values per statistic; ` +
      `${summary.shared_with_first} entries share statistics with entry (0, 0, 0, 0).`;
    root.setAttribute("data-state", JSON.stringify(summary));
    if (onChange) onChange(summary);
  }

  function draw(el, summary, mask) {
    el.replaceChildren();
    const [N, C, H, W] = summary.shape;
    const cell = 16, gap = 26, left = 70, top = 34;
    const blockW = H * W * cell;
    for (let i = 0; i < N; i++) {
      const x0 = left + i * (blockW + gap);
      el.appendChild(s("text", { x: x0, y: top - 8 }, `sample ${i}`));
      for (let j = 0; j < C; j++) {
        if (i === 0) el.appendChild(s("text", { x: left - 8, y: top + j * cell + 12, "text-anchor": "end" }, `channel ${j}`));
        for (let k = 0; k < H * W; k++) {
          const on = mask[i][j];
          const chosen = i === summary.sample && j === summary.channel && k === 0;
          el.appendChild(s("rect", { x: x0 + k * cell, y: top + j * cell, width: cell - 2, height: cell - 2,
                                     class: `bna-cell${on ? " bna-on" : ""}${chosen ? " bna-chosen" : ""}` }));
        }
      }
    }
    const width = left + N * (blockW + gap);
    el.appendChild(s("text", { x: left, y: top + C * cell + 16 }, `columns: the ${H}×${W} = ${H * W} positions (h, w) of each channel`));
    el.setAttribute("viewBox", `0 0 ${Math.max(width, 380)} ${top + C * cell + 24}`);
  }

  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
  return { update };
}

function parseValues(el) {
  try { return JSON.parse(el.getAttribute("data-values") || "{}"); } catch (e) { return {}; }
}

export function mountAll(doc) {
  for (const el of doc.querySelectorAll("[data-norm-axes]:not([data-norm-mounted])")) mount(el, parseValues(el));
}

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
