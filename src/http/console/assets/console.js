// ferroacs console: the little behaviour htmx does not give. No inline script anywhere;
// this file and htmx are the only scripts the Content-Security-Policy allows.
(function () {
  "use strict";

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  // Every htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });

  // Errors of htmx requests: show the server's message next to what was asked.
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    var text = "The server refused the request (" + xhr.status + ").";
    try {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var msg = doc.querySelector(".error-message");
      if (msg) { text = msg.textContent.trim(); }
    } catch (_) { /* keep the generic text */ }
    var elt = e.detail.elt;
    var box = (elt && elt.closest("[data-errors]")) || document.getElementById("flash");
    var target = box && (box.querySelector(".inline-error") || box);
    if (target) {
      target.textContent = text;
      target.hidden = false;
      target.setAttribute("role", "alert");
    }
  });

  // Objects of the parameter tree open and close: a second click empties the level
  // instead of loading it again.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var b = e.detail.elt;
    if (!b || !b.matches || !b.matches("button[data-toggle-children]")) { return; }
    var target = document.getElementById(b.getAttribute("aria-controls"));
    if (target && target.childElementCount > 0) {
      e.preventDefault();
      target.replaceChildren();
      b.setAttribute("aria-expanded", "false");
    } else {
      b.setAttribute("aria-expanded", "true");
    }
  });

  // "Select all" checkboxes of bulk tables.
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("input[data-select-all]")) {
      var form = t.closest("form") || document;
      form.querySelectorAll('input[name="' + t.getAttribute("data-select-all") + '"]')
        .forEach(function (c) { c.checked = t.checked; });
    }
  });

  // A file chosen for a text field (CSV import) is read into it.
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (!t || !t.matches || !t.matches("input[type=file][data-fill]")) { return; }
    var area = document.getElementById(t.getAttribute("data-fill"));
    if (!area || !t.files.length) { return; }
    t.files[0].text().then(function (text) { area.value = text; });
  });

  // File uploads with a progress bar: the raw file goes to the form's data-upload URL.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches || !form.matches("form[data-upload]")) { return; }
    e.preventDefault();
    var input = form.querySelector('input[type="file"]');
    if (!input || !input.files.length) { return; }
    var file = input.files[0];
    var params = new URLSearchParams();
    params.set("name", (form.querySelector('[name="name"]') || {}).value || file.name);
    ["file_type", "version"].forEach(function (k) {
      var f = form.querySelector('[name="' + k + '"]');
      if (f && f.value) { params.set(k, f.value); }
    });
    var bar = form.querySelector("progress");
    var status = form.querySelector(".upload-status");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("data-upload") + "?" + params.toString());
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable && bar) {
        bar.max = ev.total;
        bar.value = ev.loaded;
        if (status) { status.textContent = Math.round(100 * ev.loaded / ev.total) + " % sent"; }
      }
    });
    xhr.addEventListener("load", function () {
      if (xhr.status >= 200 && xhr.status < 300) {
        if (bar) { bar.value = bar.max; }
        if (status) { status.textContent = "Uploaded: 100 %"; }
        var list = document.getElementById("file-list");
        if (list && window.htmx) { window.htmx.trigger(list, "refresh"); }
      } else if (status) {
        var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
        var msg = doc.querySelector(".error-message");
        status.textContent = "Upload failed: " + (msg ? msg.textContent.trim() : xhr.status);
      }
    });
    xhr.addEventListener("error", function () {
      if (status) { status.textContent = "Upload failed: the connection broke."; }
    });
    if (status) { status.textContent = "0 % sent"; }
    xhr.send(file);
  });
})();
