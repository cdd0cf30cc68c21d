// Headwater dashboard: the live event stream (server-sent events); everything else is htmx.
(function () {
  function connect(feed) {
    var source = new EventSource(feed.dataset.live);
    source.addEventListener("event", function (message) {
      var empty = feed.querySelector(".empty-row");
      if (empty) empty.remove();
      feed.insertAdjacentHTML("afterbegin", message.data);
      if (window.htmx) window.htmx.process(feed.firstElementChild);
    });
    source.addEventListener("open", function () { document.body.dataset.live = "on"; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(connect);
  });
})();
