// Live updates of the dashboard: the server says "changed" on an event stream, and the
// page fetches its own fragment again. Without JavaScript the page still works (reload).
(function () {
  "use strict";
  var region = document.querySelector("[data-live]");
  if (!region || !window.EventSource) {
    return;
  }
  var busy = false;
  var again = false;

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    url.searchParams.delete("notice");
    return url.toString();
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(fragmentUrl(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        region.innerHTML = html;
        region.dispatchEvent(new CustomEvent("smsgw:updated"));
      })
      .catch(function () { /* the next change or a reload recovers */ })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var source = new EventSource("/dashboard/live");
  source.addEventListener("changed", refresh);
  // The stream opens after the page was rendered (and opens again after a lost
  // connection): whatever changed in between was told to nobody, so look once now.
  source.addEventListener("ready", function () {
    refresh();
    document.documentElement.setAttribute("data-live-ready", "1");
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
