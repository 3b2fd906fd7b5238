// The send form's SMS part count as the text is typed: the server counts (the same rules as
// the API's partsCount), a moment after the last key. Without JavaScript the count shows
// when the form comes back (an error), and the message's page shows its parts.
(function () {
  "use strict";
  var text = document.getElementById("text");
  var said = document.getElementById("text-parts");
  var form = text && text.form;
  if (!text || !said || !form || !window.fetch) {
    return;
  }
  var csrf = form.querySelector("input[name=csrf]");
  var timer = null;
  var asked = 0;

  function count() {
    var mine = ++asked;
    var body = new FormData();
    body.append("csrf", csrf ? csrf.value : "");
    body.append("text", text.value);
    fetch("/dashboard/send/parts", { method: "POST", body: body, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (answer) {
        if (mine === asked) {  // an older answer never overwrites a newer one
          said.textContent = answer.label;
        }
      })
      .catch(function () { /* the count stays as it was; sending is unaffected */ });
  }

  text.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(count, 250);
  });
})();
