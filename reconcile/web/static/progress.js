// Live progress of a run: polls the run's progress and fills the bars; reloads when its state
// changes (a queued run starts, a running one ends, the run a queued one waits behind changes).
// The same for a read-back verification in progress (#verifying): reloads when it ends.
(function () {
  "use strict";
  function poll(url, onData, keep) {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        onData(data);
        if (keep(data)) {
          setTimeout(function () { poll(url, onData, keep); }, 700);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { setTimeout(function () { poll(url, onData, keep); }, 2000); });
  }
  var table = document.getElementById("live") || document.getElementById("queued");
  if (table) {
    // Where a queued run stands ("RUN POSITION"), as the page writes it.
    var queue = function (data) {
      if (!data.queued || table.dataset.queue === undefined) { return table.dataset.queue || ""; }
      return (data.queued.behind || "") + " " + data.queued.position;
    };
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
    }, function (data) {
      return data.state === table.dataset.state && queue(data) === (table.dataset.queue || "");
    });
  }
  var verifying = document.getElementById("verifying");
  if (verifying) {
    poll(verifying.dataset.url, function () {}, function (data) { return data.state === "running"; });
  }
})();
