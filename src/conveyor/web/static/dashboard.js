// Conveyor dashboard: what htmx attributes alone cannot say.
//
// - One timer refreshes every region marked [data-refresh] (each fetches its own
//   fragment), so the live toggle and an open modal can hold all of them at once.
// - Ticked job boxes are remembered here, so a refresh that redraws the table (or moves
//   a ticked job off the page) does not lose the selection.
// - Job details open in a <dialog>; while it is open only the dialog refreshes.
// - htmx does not swap error replies: their text is shown in the flash area instead.
(function () {
  "use strict";

  var body = document.body;
  var seconds = parseFloat(body.getAttribute("data-refresh-seconds")) || 5;
  var STORE = "conveyor.live";
  var live = true;
  try {
    live = window.localStorage.getItem(STORE) !== "off";
  } catch (e) {
    // Storage can be disabled; the toggle then lasts only for this page.
  }
  var modal = document.getElementById("modal");
  var modalBody = document.getElementById("modal-body");
  var toggle = document.getElementById("live-toggle");
  var selection = new Set();
  var scrolls = {};

  function modalOpen() {
    return !!(modal && modal.open);
  }

  function refresh(force) {
    if (!window.htmx || (!force && (!live || document.hidden))) {
      return;
    }
    var open = modalOpen();
    document.querySelectorAll("[data-refresh]").forEach(function (region) {
      // With the modal open, the page behind it holds still: rows do not move under
      // the reader, and the dialog shows the job as it changes.
      if (open === modal.contains(region)) {
        window.htmx.trigger(region, "refresh");
      }
    });
  }

  function showToggle() {
    if (!toggle) {
      return;
    }
    toggle.setAttribute("aria-pressed", live ? "true" : "false");
    toggle.textContent = live ? "Live" : "Paused";
    toggle.title = live
      ? "Refreshing every " + seconds + " s; click to pause"
      : "Refresh paused; click to resume";
    body.classList.toggle("refresh-paused", !live);
  }

  if (toggle) {
    toggle.addEventListener("click", function () {
      live = !live;
      try {
        window.localStorage.setItem(STORE, live ? "on" : "off");
      } catch (e) {
        // See above: without storage the choice is not remembered.
      }
      showToggle();
      refresh(false);
    });
  }
  showToggle();
  window.setInterval(function () {
    refresh(false);
  }, seconds * 1000);
  document.addEventListener("visibilitychange", function () {
    refresh(false);
  });

  // -- selection ------------------------------------------------------------------

  function jobsForm() {
    return document.getElementById("jobs-form");
  }

  function readSelection() {
    var form = jobsForm();
    selection = new Set();
    if (!form) {
      return;
    }
    form.querySelectorAll("input[name=ids]").forEach(function (input) {
      if (input.type === "hidden" || input.checked) {
        selection.add(input.value);
      }
    });
  }

  function applySelection() {
    var form = jobsForm();
    if (!form) {
      return;
    }
    var shown = new Set();
    var boxes = form.querySelectorAll("input[type=checkbox][name=ids]");
    boxes.forEach(function (box) {
      box.checked = selection.has(box.value);
      shown.add(box.value);
    });
    var holder = form.querySelector(".offpage-ids");
    if (holder) {
      holder.replaceChildren();
      selection.forEach(function (id) {
        if (!shown.has(id)) {
          var hidden = document.createElement("input");
          hidden.type = "hidden";
          hidden.name = "ids";
          hidden.value = id;
          holder.appendChild(hidden);
        }
      });
    }
    var all = form.querySelector(".select-all");
    if (all) {
      var ticked = Array.prototype.filter.call(boxes, function (box) {
        return box.checked;
      }).length;
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
    var count = form.querySelector(".selected-count");
    if (count) {
      count.textContent = selection.size + " selected";
    }
    form.querySelectorAll(".needs-selection").forEach(function (button) {
      button.disabled = selection.size === 0;
    });
  }

  body.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement)) {
      return;
    }
    if (target.classList.contains("select-all")) {
      var form = jobsForm();
      form.querySelectorAll("input[type=checkbox][name=ids]").forEach(function (box) {
        if (target.checked) {
          selection.add(box.value);
        } else {
          selection.delete(box.value);
        }
      });
      applySelection();
    } else if (target.name === "ids" && target.type === "checkbox") {
      if (target.checked) {
        selection.add(target.value);
      } else {
        selection.delete(target.value);
      }
      applySelection();
    }
  });

  body.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof Element && target.classList.contains("clear-selection")) {
      selection.clear();
      applySelection();
    }
  });

  // -- swaps ----------------------------------------------------------------------

  body.addEventListener("htmx:beforeSwap", function (event) {
    // Tables scroll sideways on narrow screens; a redraw must not jump back to the left.
    var target = event.detail.target;
    scrolls = {};
    if (target && target.querySelectorAll) {
      target.querySelectorAll(".table-wrap[id]").forEach(function (wrap) {
        scrolls[wrap.id] = wrap.scrollLeft;
      });
    }
  });

  function mirrorFlash() {
    var flash = document.getElementById("flash");
    var copy = document.getElementById("modal-flash");
    if (flash && copy) {
      copy.replaceChildren.apply(
        copy,
        Array.prototype.map.call(flash.children, function (child) {
          return child.cloneNode(true);
        })
      );
    }
  }

  body.addEventListener("htmx:afterSettle", function (event) {
    Object.keys(scrolls).forEach(function (id) {
      var wrap = document.getElementById(id);
      if (wrap) {
        wrap.scrollLeft = scrolls[id];
      }
    });
    scrolls = {};
    applySelection();
    var flash = document.getElementById("flash");
    var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    if (flash && flash.dataset.stale === "refresh" && trigger && trigger.type === "refresh") {
      // The refresh that failed has worked again: its error no longer applies.
      flash.replaceChildren();
      delete flash.dataset.stale;
    }
    if (event.detail.target === modalBody && modal && !modal.open) {
      document.getElementById("modal-flash").replaceChildren();
      modal.showModal();
    }
    if (modalOpen() && event.detail.target && event.detail.target.id === "flash") {
      mirrorFlash();
    }
  });

  if (modal) {
    modal.addEventListener("close", function () {
      modalBody.replaceChildren();
      refresh(false);
    });
  }

  body.addEventListener("conveyor-acted", function (event) {
    var detail = event.detail || {};
    if (detail.clear) {
      selection.clear();
      applySelection();
    }
    if (detail.deleted) {
      if (modalOpen()) {
        modal.close();
      } else {
        var job = document.querySelector("[data-job-id='" + detail.deleted + "']");
        if (job && job.dataset.queueUrl) {
          window.location.assign(job.dataset.queueUrl);
          return;
        }
      }
    }
    refresh(true);
  });

  // -- errors ---------------------------------------------------------------------

  function showError(text, fromRefresh) {
    var flash = document.getElementById("flash");
    if (!flash) {
      return;
    }
    var line = document.createElement("p");
    line.className = "flash flash-error";
    line.setAttribute("role", "alert");
    line.textContent = text;
    flash.replaceChildren(line);
    if (fromRefresh) {
      flash.dataset.stale = "refresh";
    } else {
      delete flash.dataset.stale;
    }
    if (modalOpen()) {
      mirrorFlash();
    }
  }

  function fromRefresh(event) {
    var config = event.detail.requestConfig;
    return !!(config && config.triggeringEvent && config.triggeringEvent.type === "refresh");
  }

  body.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = (xhr.responseText || "").trim();
    if (!text || /^\s*</.test(text)) {
      text = "The server answered " + xhr.status + " " + xhr.statusText;
    }
    showError(text, fromRefresh(event));
    if (event.detail.elt && event.detail.elt.hasAttribute("data-refresh")) {
      event.detail.elt.classList.add("stale");
    }
  });

  body.addEventListener("htmx:sendError", function (event) {
    showError("The dashboard server did not answer; the figures shown may be out of date.", true);
    if (event.detail.elt && event.detail.elt.hasAttribute("data-refresh")) {
      event.detail.elt.classList.add("stale");
    }
  });

  readSelection();
  applySelection();
})();
