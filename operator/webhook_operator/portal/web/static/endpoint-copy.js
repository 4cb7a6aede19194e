// The copy button next to a secret shown once. Without this script (or a clipboard) the
// secret stays selectable text in a readonly field; the button only appears with it.
(function () {
  "use strict";
  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentNode.parentNode.querySelector(".copy-status");
    function say(text) {
      if (status) {
        status.textContent = text;
      }
    }
    function byHand() {
      field.focus();
      field.select();
      say("Copying was not allowed: the secret is selected, copy it with Ctrl+C or Cmd+C.");
    }
    if (!navigator.clipboard || !navigator.clipboard.writeText) {
      byHand();
      return;
    }
    navigator.clipboard.writeText(field.value).then(function () {
      say("Copied to the clipboard.");
    }, byHand);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
      buttons[i].addEventListener("click", function (event) {
        copy(event.currentTarget);
      });
    }
  });
})();
