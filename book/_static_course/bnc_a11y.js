// Accessibility repairs of the theme's markup (pydata-sphinx-theme under sphinx-book-theme), on every page.
// Each one fixes what axe-core reports as a serious WCAG 2.1 A/AA violation (tests/test_site.py runs axe):
(function () {
  function repair() {
    // The search button is named "Search" (aria-label) but shows its keyboard shortcut too: the shortcut is a
    // visual hint, hidden from assistive technology, and the name comes from the text "Search" itself
    // (label-content-name-mismatch).
    document.querySelectorAll(".search-button__kbd-shortcut").forEach(function (e) { e.setAttribute("aria-hidden", "true"); });
    document.querySelectorAll(".search-button__button[aria-label]").forEach(function (b) {
      if (b.textContent.trim()) { b.removeAttribute("aria-label"); }
    });
    // The colour-mode button is named "Color mode"; its icons carry other titles (Light, Dark, System
    // Settings), as attributes or, once Font Awesome has made them SVGs, as <title> elements.
    document.querySelectorAll(".theme-switch-button [title]").forEach(function (e) {
      e.removeAttribute("title");
      e.setAttribute("aria-hidden", "true");
    });
    document.querySelectorAll(".theme-switch-button svg title").forEach(function (t) { t.remove(); });
    document.querySelectorAll(".theme-switch-button svg").forEach(function (e) { e.setAttribute("aria-hidden", "true"); });
    // The sidebar's expand/collapse toggles are <summary> elements holding an icon only (summary-name).
    document.querySelectorAll("nav summary").forEach(function (s) {
      if (s.textContent.trim() || s.hasAttribute("aria-label")) { return; }
      var li = s.closest("li"), link = li && li.querySelector(":scope > a");
      s.setAttribute("aria-label", "Sections of " + (link ? link.textContent.trim() : "this page"));
    });
    // docutils' citation list: role="list" whose entries have role="doc-biblioentry" (aria-required-children).
    document.querySelectorAll(".citation-list[role='list'] > [role='doc-biblioentry']").forEach(function (e) {
      e.setAttribute("role", "listitem");
    });
    // Static ipywidgets sliders (rendered by the widget manager after load): the slider handle gets the widget's
    // description as its name (aria-input-field-name).
    document.querySelectorAll("[role='slider']:not([aria-label])").forEach(function (s) {
      var box = s.closest(".widget-slider, .jupyter-widgets"), label = box && box.querySelector(".widget-label");
      var text = label && label.textContent.trim();
      s.setAttribute("aria-label", text || "slider");
    });
    // Figures inside a static widget snapshot (an ipywidgets Output, e.g. `interact`) come without alt text.
    document.querySelectorAll(".jupyter-widgets img:not([alt]), .jupyter-widgets img[alt='']").forEach(function (i) {
      i.setAttribute("alt", "Figure drawn by the interactive widget, a static snapshot of its first setting " +
                     "(run the notebook to move the sliders)");
    });
    // Outputs that scroll sideways take keyboard focus, so they can be scrolled without a mouse
    // (scrollable-region-focusable).
    document.querySelectorAll(".cell_output .output, .cell_output .output > div").forEach(function (e) {
      if (e.scrollWidth > e.clientWidth && !e.hasAttribute("tabindex")) { e.setAttribute("tabindex", "0"); }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", repair); } else { repair(); }
  window.addEventListener("load", repair);  // after Font Awesome has replaced the icons
  // Widgets render asynchronously: repair what they add.
  var pending = false;
  new MutationObserver(function () {
    if (pending) { return; }
    pending = true;
    setTimeout(function () { pending = false; repair(); }, 50);
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
