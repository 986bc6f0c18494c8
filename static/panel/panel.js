/* The panel's only script besides htmx. The Content-Security-Policy forbids inline scripts
   and handlers, so every behaviour is declared with data- attributes and wired here. */
(function () {
  "use strict";

  /* A form with data-confirm asks before it is sent. Where the outcome depends on a choice
     in the form (a restore mode, a migration strategy), the chosen <option> or radio carries
     its own data-confirm, so the question names exactly what will run. */
  function confirmation(form) {
    var chosen = form.querySelector("option:checked[data-confirm], input:checked[data-confirm]");
    return chosen ? chosen.dataset.confirm : form.dataset.confirm;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
    if (!window.confirm(confirmation(form))) event.preventDefault();
  });

  /* A polled part marked data-pause-while-used is not refreshed while the user is in it:
     focus inside it, or a control whose value differs from what the page was served with
     (a choice made but not yet sent). The next poll after the user leaves refreshes it. */
  function changed(control) {
    if (control instanceof HTMLSelectElement) {
      // Served without a `selected` option, a single select shows its first one.
      var options = Array.prototype.slice.call(control.options);
      var served = options.filter(function (option) { return option.defaultSelected; });
      if (!served.length && !control.multiple && options.length) served = [options[0]];
      return options.some(function (option) {
        return option.selected !== (served.indexOf(option) !== -1);
      });
    }
    if (control.type === "checkbox" || control.type === "radio") {
      return control.checked !== control.defaultChecked;
    }
    return control.value !== control.defaultValue;
  }

  function inUse(part) {
    var active = document.activeElement;
    if (active && active !== document.body && part.contains(active)) return true;
    return Array.prototype.some.call(part.querySelectorAll("input, select, textarea"), changed);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var part = event.detail.elt;
    if (part.hasAttribute("data-pause-while-used") && inUse(part)) {
      part.dataset.paused = "true";
      event.preventDefault();
    } else if (part.dataset) {
      delete part.dataset.paused;
    }
  });

  /* Bars whose geometry comes from the data (the migration timeline), set through the CSSOM,
     which the policy allows, instead of style attributes, which it does not. */
  function placeBars(root) {
    root.querySelectorAll("[data-left][data-width]").forEach(function (bar) {
      bar.style.left = bar.dataset.left + "%";
      bar.style.width = bar.dataset.width + "%";
    });
  }

  /* Toasts: each operation's once per tab (a new page's first poll looks back a little),
     dismissed by their button; successes also go away by themselves. */
  function shownToasts() {
    try { return JSON.parse(window.sessionStorage.getItem("panel-toasts") || "[]"); } catch (e) { return []; }
  }

  function armToasts(root) {
    var selector = ".toast[data-toast-id]";
    var toasts = Array.prototype.slice.call(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) toasts.push(root);
    var shown = shownToasts();
    toasts.forEach(function (toast) {
      if (toast.dataset.armed) return;
      if (shown.indexOf(toast.dataset.toastId) !== -1) { toast.remove(); return; }
      shown.push(toast.dataset.toastId);
      toast.dataset.armed = "true";
      if (toast.dataset.autoclose) {
        window.setTimeout(function () { toast.remove(); }, Number(toast.dataset.autoclose) * 1000);
      }
    });
    try { window.sessionStorage.setItem("panel-toasts", JSON.stringify(shown.slice(-50))); } catch (e) { /* private mode */ }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var dismiss = target && target.closest("[data-dismiss]");
    if (dismiss) {
      var toast = dismiss.closest(".toast");
      if (toast) toast.remove();
      return;
    }
    var toggle = target && target.closest("[data-toggle-theme]");
    if (toggle) {
      var dark = document.documentElement.dataset.theme !== "dark";
      window.panelTheme.set(dark ? "dark" : "light");
      return;
    }
    var copy = target && target.closest("[data-copy-from]");
    if (copy) {
      navigator.clipboard.writeText(document.getElementById(copy.dataset.copyFrom).textContent).then(
        function () { copy.textContent = "Copied"; },
        function () { copy.textContent = "Copy failed: select the text instead"; });
      return;
    }
    var back = target && target.closest("[data-history-back]");
    if (back && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
      return;
    }
    var menu = target && target.closest("[data-toggle-nav]");
    if (menu) {
      var open = menu.getAttribute("aria-expanded") !== "true";
      menu.setAttribute("aria-expanded", open ? "true" : "false");
      document.body.classList.toggle("nav-open", open);
    }
  });

  /* Without a clipboard (or JavaScript) the text stays selectable; the button shows only here. */
  function offerCopy(root) {
    if (!navigator.clipboard) return;
    root.querySelectorAll("[data-copy-from]").forEach(function (button) { button.hidden = false; });
  }

  function onLoad(root) {
    placeBars(root);
    offerCopy(root);
    armToasts(root);
  }

  document.addEventListener("DOMContentLoaded", function () {
    onLoad(document);
    document.body.addEventListener("htmx:load", function (event) { onLoad(event.detail.elt); });
    document.body.addEventListener("htmx:oobAfterSwap", function (event) { onLoad(event.detail.target); });
  });
})();
