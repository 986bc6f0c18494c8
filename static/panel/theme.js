/* Loaded in <head>, before the page paints: the theme the user chose (else the system's). */
(function () {
  "use strict";
  var root = document.documentElement;
  function system() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function stored() {
    try { return window.localStorage.getItem("panel-theme"); } catch (e) { return null; }
  }
  root.dataset.theme = stored() || system();
  window.panelTheme = {
    set: function (theme) {
      root.dataset.theme = theme;
      try { window.localStorage.setItem("panel-theme", theme); } catch (e) { /* private mode */ }
    },
  };
})();
