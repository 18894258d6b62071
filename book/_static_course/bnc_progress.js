// The landing page's progress table: how many self-checks of each chapter this browser has answered right.
// The quizzes keep their answers per page in localStorage under "bncourse-progress:<path of the page>"
// (bncourse/exercises/static_html.py); this script only reads them, and its button removes them.
// Nothing is sent anywhere. The chapters and their quiz ids come from the build (book/_ext/bncourse_site.py).
(function () {
  var PREFIX = "bncourse-progress:";
  function storage() { try { return window.localStorage; } catch (e) { return null; } }
  function saved(path) {
    var ls = storage();
    if (!ls) { return {}; }
    try { return JSON.parse(ls.getItem(PREFIX + path) || "{}") || {}; } catch (e) { return {}; }
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function render(root, chapters) {
    var table = el("table", { "class": "table bnc-progress-table" });
    table.appendChild(el("caption", {}, "Self-checks answered right in this browser"));
    var head = el("tr");
    head.appendChild(el("th", { scope: "col" }, "page"));
    head.appendChild(el("th", { scope: "col" }, "done"));
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    var total = 0, done = 0;
    chapters.forEach(function (ch) {
      var path = new URL(ch.url, window.location.href).pathname;
      var answers = saved(path), n = 0;
      ch.ids.forEach(function (id) { if (answers[id] && answers[id].result === "right") { n++; } });
      total += ch.ids.length; done += n;
      var tr = el("tr", { "data-bnc-page": path, "data-bnc-done": String(n), "data-bnc-total": String(ch.ids.length) });
      var td = el("td");
      td.appendChild(el("a", { href: ch.url }, ch.title));
      tr.appendChild(td);
      tr.appendChild(el("td", {}, n + " of " + ch.ids.length));
      body.appendChild(tr);
    });
    var status = el("p", { "class": "bnc-progress-total", role: "status" },
                    "In all: " + done + " of " + total + " self-checks done.");
    var reset = el("button", { type: "button", "class": "bnc-progress-reset" }, "Forget my answers");
    reset.addEventListener("click", function () {
      var ls = storage();
      if (ls) {
        for (var i = ls.length - 1; i >= 0; i--) {
          var key = ls.key(i);
          if (key && key.indexOf(PREFIX) === 0) { ls.removeItem(key); }
        }
      }
      render(root, chapters);
      root.querySelector(".bnc-progress-total").textContent += " Your saved answers were removed.";
    });
    var note = root.querySelector(".bnc-progress-note");
    root.replaceChildren();
    if (note) { root.appendChild(note); }
    root.appendChild(table);
    root.appendChild(status);
    root.appendChild(reset);
    root.setAttribute("data-bnc-done", String(done));
    root.setAttribute("data-bnc-total", String(total));
  }
  function start() {
    var data = document.getElementById("bnc-progress-data");
    var chapters = data ? JSON.parse(data.textContent) : [];
    var roots = document.querySelectorAll("[data-bnc-progress]");
    for (var i = 0; i < roots.length; i++) { render(roots[i], chapters); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
