// Live progress of a run: polls the run's progress and fills the bars; reloads when its state
// changes (a queued run starts, a running one ends).
(function () {
  "use strict";
  var table = document.getElementById("live") || document.getElementById("queued");
  if (!table) { return; }
  // Where a queued run stands ("RUN POSITION"), as the page writes it: a change reloads it.
  function queue(data) {
    if (!data.queued || table.dataset.queue === undefined) { return table.dataset.queue || ""; }
    return (data.queued.behind || "") + " " + data.queued.position;
  }
  function update() {
    fetch(table.dataset.url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        table.querySelectorAll("tr[data-community]").forEach(function (row) {
          var counts = data.communities[row.dataset.community] || {};
          var done = 0;
          Object.keys(counts).forEach(function (k) { done += counts[k]; });
          var total = Number(row.dataset.total);
          row.querySelector("progress").value = done;
          row.querySelector("progress").textContent = done + " of " + total;
          row.querySelector(".done").textContent = done + " of " + total;
        });
        if (data.state === table.dataset.state && queue(data) === (table.dataset.queue || "")) {
          setTimeout(update, 700);
        } else { window.location.reload(); }
      })
      .catch(function () { setTimeout(update, 2000); });
  }
  update();
})();
