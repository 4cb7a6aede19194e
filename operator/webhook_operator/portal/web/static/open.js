// Exchanges the ticket in the address's fragment for a session cookie: the ticket leaves
// the address bar first, then the same form a person could fill in is posted.
(function () {
  "use strict";
  var match = /(?:^#|&)ticket=([^&]+)/.exec(window.location.hash);
  if (!match) {
    return;
  }
  history.replaceState(null, "", window.location.pathname);
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("open");
    document.getElementById("ticket").value = decodeURIComponent(match[1]);
    document.getElementById("opening").hidden = false;
    form.hidden = true;
    form.submit();
  });
})();
