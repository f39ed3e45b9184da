/* Small progressive enhancements; every page works without them. */
(function () {
  "use strict";

  // <select data-autosubmit> submits its form on change (htmx intercepts it when the form
  // has hx-post); the fallback submit buttons (.js-hide) are hidden by CSS when JS runs.
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches && el.matches("select[data-autosubmit]") && el.form) {
      if (el.form.requestSubmit) el.form.requestSubmit();
      else el.form.submit();
    }
  });

  // <button data-copy-target="#id"> copies that element's text.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* text stays selected */ }
    }
  });

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // htmx does not swap error responses: say what happened in the messages area instead.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    var text = status === 403 ? "You are not allowed to do this."
      : status === 404 ? "That no longer exists. Reload the page."
      : "Something went wrong (" + status + "). Reload the page and try again.";
    showMessage(text, "error");
  });
  document.addEventListener("htmx:sendError", function () {
    showMessage("Could not reach the server. Check your connection.", "error");
  });

  // Sizes and colours that depend on data come as data attributes (the Content-Security-Policy
  // allows no style="" attribute): <span data-meter-pct="37.5"> is a bar 37.5% wide, and
  // <figure data-hue="210"> sets the preview's --hue. Applied to the page and to every piece
  // htmx swaps in.
  function applyDataStyles(root) {
    if (!root || !root.querySelectorAll) return;
    root.querySelectorAll("[data-meter-pct]").forEach(function (el) {
      var pct = parseFloat(el.getAttribute("data-meter-pct"));
      el.style.width = (isFinite(pct) ? Math.max(0, Math.min(100, pct)) : 0) + "%";
    });
    root.querySelectorAll("[data-hue]").forEach(function (el) {
      var hue = parseFloat(el.getAttribute("data-hue"));
      if (isFinite(hue)) el.style.setProperty("--hue", String(hue));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { applyDataStyles(document); });
  } else {
    applyDataStyles(document);
  }
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.parentNode) applyDataStyles(elt.parentNode);
  });

  // Printing: open the number tables folded under the charts (staff reports).
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details.chart-data").forEach(function (d) {
      d.setAttribute("open", "");
    });
  });

  function showMessage(text, level) {
    var box = document.getElementById("messages");
    if (!box) return;
    var div = document.createElement("div");
    div.className = "alert alert-" + level;
    div.setAttribute("role", "alert");
    div.textContent = text;
    box.appendChild(div);
  }
})();
