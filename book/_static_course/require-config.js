// Loaded by myst-nb on pages that carry ipywidget state, between require.js and embed-amd.js (see _config.yml).
(function () {
  // 1. Point the ipywidgets embedder at the vendored @jupyter-widgets/html-manager, so its chunks and icon fonts
  //    load from this site instead of a CDN (scripts/vendor_assets.py vendors it).
  var here = document.currentScript ? document.currentScript.src : "";
  var base = here.replace(/require-config\.js(\?.*)?$/, "vendor/html-manager/dist");
  if (window.require && window.require.config) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
  }
  // 2. html-manager 1.0.6 typesets widget labels with MathJax 2's MathJax.Hub.Queue; the site runs MathJax 3
  //    (which has no Hub), so every widget would raise "Cannot read properties of undefined (reading 'Queue')".
  //    A minimal shim forwards those requests to MathJax 3's typesetPromise once MathJax has started.
  var hub = {
    Queue: function () {
      var elements = [];
      for (var i = 0; i < arguments.length; i++) {
        var a = arguments[i];
        if (Array.isArray(a) && a[0] === "Typeset" && a[2]) { elements.push(a[2]); }
      }
      var mj = window.MathJax;
      var run = function () {
        if (mj && mj.typesetPromise && elements.length) { mj.typesetPromise(elements).catch(function () {}); }
      };
      if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(run); }
      else { window.addEventListener("load", function () { mj = window.MathJax; if (mj && mj.startup) { mj.startup.promise.then(run); } }); }
    }
  };
  window.MathJax = window.MathJax || {};
  if (!window.MathJax.Hub) { window.MathJax.Hub = hub; }
  document.addEventListener("DOMContentLoaded", function () {
    if (window.MathJax && !window.MathJax.Hub) { window.MathJax.Hub = hub; }
  });
})();
