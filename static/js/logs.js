// The log viewer of a container's page (server side: console/pages/logs.py, console/logstream.py).
//
// The last lines come over the websocket ({"lines": [html...], "reset": true}), then every batch
// PID 1 writes. The DOM keeps at most WINDOW lines: following drops the oldest, loading older lines
// (scrolling to the top) drops the newest. Scrolling up pauses following; live lines are then only
// remembered (the newest WINDOW of them) and drawn when the reader is back at the bottom. Search asks
// the server (the whole log), and shows its matches until the box is emptied.
(function () {
  "use strict";

  const WINDOW = 2000;
  const NEAR = 24; // px from an edge that count as being there
  const REDRAW = 100; // ms between two redraws of the whole window

  function start(section) {
    const lines = section.querySelector("#log-lines");
    const status = section.querySelector("#log-status");
    const info = section.querySelector("#log-info");
    const search = section.querySelector("#log-search");
    const stamps = section.querySelector("#log-timestamps");
    const followButton = section.querySelector("#log-follow");
    const url = section.dataset.url;
    let recent = []; // html of the newest lines, oldest first
    let queued = []; // received while following, not drawn yet
    let following = true;
    let detached = true; // the DOM does not end with the newest lines: redraw from `recent`
    let searching = false;
    let loadingOlder = false;
    let noOlder = false;
    let drawPending = false;
    let lastRedraw = -Infinity;
    let closedForGood = false;

    function remember(html) {
      recent = recent.length ? recent.concat(html) : html.slice();
      if (recent.length > WINDOW * 1.5) recent = recent.slice(-WINDOW);
    }

    function schedule() {
      if (!drawPending) {
        drawPending = true;
        requestAnimationFrame(draw);
      }
    }

    function draw() {
      drawPending = false;
      if (!following || searching) return;
      if (detached) {
        // A flood redraws the whole window: at most every REDRAW ms, so the lines keep coming meanwhile.
        const wait = lastRedraw + REDRAW - performance.now();
        if (wait > 0) {
          drawPending = true;
          setTimeout(() => {
            drawPending = false;
            schedule();
          }, wait);
          return;
        }
        lastRedraw = performance.now();
        lines.innerHTML = recent.slice(-WINDOW).join("");
        detached = false;
        queued = [];
        noOlder = false;
      } else if (queued.length) {
        const adding = queued.length > WINDOW ? queued.slice(-WINDOW) : queued;
        queued = [];
        lines.insertAdjacentHTML("beforeend", adding.join(""));
        trimTop();
      }
      lines.scrollTop = lines.scrollHeight;
    }

    function removeRange(first, last) {
      const range = document.createRange();
      range.setStartBefore(first);
      range.setEndAfter(last);
      range.deleteContents();
    }

    function trimTop() {
      const extra = lines.childElementCount - WINDOW;
      if (extra > 0) {
        removeRange(lines.firstElementChild, lines.children[extra - 1]);
        noOlder = false;
      }
    }

    function trimBottom() {
      if (lines.childElementCount > WINDOW) {
        removeRange(lines.children[WINDOW], lines.lastElementChild);
        detached = true;
      }
    }

    function setFollowing(on) {
      following = on;
      followButton.hidden = on || searching;
      if (on) schedule();
    }

    function receive(event) {
      const message = JSON.parse(event.data);
      if (message.lines !== undefined) event.target.send('{"ack": 1}'); // the server sends the next one
      if (message.status !== undefined) {
        status.textContent = message.status;
        if (message.status === "no such container") closedForGood = true;
      }
      if (message.lines === undefined) return;
      if (message.reset) {
        recent = [];
        queued = [];
        detached = true;
      }
      remember(message.lines);
      if (following && !searching) {
        // Frames may come seldom (a hidden tab gets none): past a window's worth, redraw from `recent`.
        if (detached || queued.length + message.lines.length > WINDOW) {
          queued = [];
          detached = true;
        } else {
          queued.push(...message.lines);
        }
        schedule();
      }
    }

    function connect() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const socket = new WebSocket(`${scheme}//${location.host}${section.dataset.ws}`);
      socket.onmessage = receive;
      socket.onclose = () => {
        if (!closedForGood) setTimeout(connect, 2000);
      };
      window.addEventListener("pagehide", () => {
        closedForGood = true;
        socket.close();
      });
    }

    function fragment(html) {
      const template = document.createElement("template");
      template.innerHTML = html;
      return template.content;
    }

    async function fetchPage(query) {
      const response = await fetch(`${url}?${query}`, {headers: {"HX-Request": "true"}, credentials: "same-origin"});
      if (!response.ok) return null;
      return fragment(await response.text());
    }

    // The cursor of the first line shown: its time and how many shown lines share that time.
    function firstCursor() {
      const first = lines.firstElementChild;
      if (!first) return null;
      const time = first.dataset.t;
      let same = 0;
      for (let line = first; line && line.dataset.t === time; line = line.nextElementSibling) same++;
      return `${time}-${same}`;
    }

    async function loadOlder() {
      const cursor = firstCursor();
      if (loadingOlder || noOlder || searching || cursor === null) return;
      loadingOlder = true;
      try {
        const page = await fetchPage(`before=${cursor}`);
        const older = page && page.querySelector("#log-lines");
        const root = page && page.querySelector("#log-page");
        if (!older || searching) return;
        noOlder = !root || !root.dataset.older;
        if (!older.childElementCount) return;
        setFollowing(false);
        const height = lines.scrollHeight;
        const moved = document.createDocumentFragment();
        moved.append(...older.children);
        lines.insertBefore(moved, lines.firstChild);
        lines.scrollTop += lines.scrollHeight - height;
        trimBottom();
      } finally {
        loadingOlder = false;
      }
    }

    let searchRun = 0;
    async function runSearch() {
      const term = search.value.trim();
      const run = ++searchRun;
      if (!term) {
        if (searching) {
          searching = false;
          detached = true;
          info.textContent = "";
          setFollowing(true);
        }
        return;
      }
      const page = await fetchPage(`q=${encodeURIComponent(term)}`);
      if (run !== searchRun || !page) return; // a newer search went out meanwhile
      searching = true;
      following = false;
      followButton.hidden = true;
      const found = page.querySelector("#log-lines");
      const summary = page.querySelector(".log-summary");
      lines.replaceChildren(...(found ? found.children : []));
      info.textContent = summary ? summary.textContent : "";
      lines.scrollTop = lines.scrollHeight;
    }

    function debounce(work, delay) {
      let timer = null;
      return () => {
        clearTimeout(timer);
        timer = setTimeout(work, delay);
      };
    }

    lines.addEventListener("scroll", () => {
      if (searching) return;
      const atBottom = lines.scrollHeight - lines.scrollTop - lines.clientHeight < NEAR;
      if (atBottom !== following) setFollowing(atBottom);
      if (lines.scrollTop < NEAR && !atBottom) loadOlder();
    }, {passive: true});

    section.querySelector("#log-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      runSearch();
    });
    search.addEventListener("input", debounce(runSearch, 300));
    stamps.addEventListener("change", () => lines.classList.toggle("show-ts", stamps.checked));
    followButton.addEventListener("click", () => {
      lines.scrollTop = lines.scrollHeight;
      setFollowing(true);
    });
    section.addEventListener("click", (event) => {
      if (event.target.id === "log-older") {
        event.preventDefault();
        loadOlder();
      }
    });

    // What the server rendered stands until the websocket's first message replaces it.
    if (lines.childElementCount) {
      detached = false;
      lines.scrollTop = lines.scrollHeight;
    }
    connect();
  }

  function init() {
    const section = document.getElementById("logs");
    if (section && section.dataset.live === "1") start(section);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
