// Keyboard shortcuts for the annotation pages. Every shortcut clicks the same button or radio a mouse would.
"use strict";
(function () {
  function typing(ev) {
    var t = ev.target;
    return t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio"));
  }
  function go(id) { var a = document.getElementById(id); if (a) { window.location.href = a.href; } }
  function activeTurn() {
    var sets = Array.prototype.slice.call(document.querySelectorAll("fieldset.rate"));
    var focused = sets.filter(function (f) { return f.contains(document.activeElement); })[0];
    return focused || sets.filter(function (f) { return !f.querySelector("input:checked"); })[0] || sets[sets.length - 1];
  }
  function markActive() {
    var cur = activeTurn();
    document.querySelectorAll("fieldset.rate").forEach(function (f) { f.classList.toggle("active", f === cur); });
  }
  document.addEventListener("keydown", function (ev) {
    var form = document.getElementById("label-form");
    if (ev.ctrlKey && ev.key === "Enter" && ev.target.id === "edited") {
      ev.preventDefault(); document.getElementById("choice-edit").click(); return;
    }
    if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var key = ev.key.toLowerCase();
    if (key === "j" || key === "arrowright") { return go("next"); }
    if (key === "k" || key === "arrowleft") { return go("prev"); }
    if (key === "u") { return go("next-pending"); }
    if (!form) { return; }
    var kind = form.getAttribute("data-kind");
    if (kind === "multiturn") {
      if (key === "enter") { ev.preventDefault(); document.getElementById("save").click(); return; }
      var n = ["1", "2", "3"].indexOf(key);
      var f = activeTurn();
      if (n >= 0 && f) {
        var radio = f.querySelectorAll("input[type=radio]")[n];
        if (radio && !radio.disabled) { radio.click(); radio.focus(); }
        var sets = Array.prototype.slice.call(document.querySelectorAll("fieldset.rate"));
        var next = sets[sets.indexOf(f) + 1];  // rating a turn moves on to the next one
        if (next) { (next.querySelector("input:checked") || next.querySelector("input")).focus(); }
        markActive();
      }
      return;
    }
    if (kind === "review" && key === "e") {
      ev.preventDefault(); var box = document.getElementById("edit-box"); box.open = true;
      document.getElementById("edited").focus(); return;
    }
    var buttons = form.querySelectorAll("button[data-keys]");
    for (var i = 0; i < buttons.length; i++) {
      if (buttons[i].getAttribute("data-keys").split(" ").indexOf(key) >= 0 && !buttons[i].disabled) {
        ev.preventDefault(); buttons[i].click(); return;
      }
    }
  });
  document.addEventListener("change", markActive);
  document.addEventListener("DOMContentLoaded", markActive);
})();
