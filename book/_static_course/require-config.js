// Point the ipywidgets embedder (embed-amd.js) at the vendored copy of @jupyter-widgets/html-manager, so its
// chunks and icon fonts load from this site instead of a CDN (see scripts/vendor_assets.py).
(function () {
  var here = document.currentScript ? document.currentScript.src : "";
  var base = here.replace(/require-config\.js(\?.*)?$/, "vendor/html-manager/dist");
  if (window.require && window.require.config) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
  }
})();
