// Live progress of a run: polls the run's progress and fills the bars; reloads when it ends.
// The same for a read-back verification in progress (#verifying): reloads when it ends.
(function () {
  "use strict";
  function poll(url, onData) {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        onData(data);
        if (data.state === "running") {
          setTimeout(function () { poll(url, onData); }, 700);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { setTimeout(function () { poll(url, onData); }, 2000); });
  }
  var table = document.getElementById("live");
  if (table) {
    poll(table.dataset.url, function (data) {
      table.querySelectorAll("tr[data-community]").forEach(function (row) {
        var counts = data.communities[row.dataset.community] || {};
        var done = 0;
        Object.keys(counts).forEach(function (k) { done += counts[k]; });
        var total = Number(row.dataset.total);
        row.querySelector("progress").value = done;
        row.querySelector("progress").textContent = done + " of " + total;
        row.querySelector(".done").textContent = done + " of " + total;
      });
    });
  }
  var verifying = document.getElementById("verifying");
  if (verifying) {
    poll(verifying.dataset.url, function () {});
  }
})();
