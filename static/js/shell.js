// The container page's console: xterm.js over the shell websocket.
// Protocol (console/pages/shell.py): binary frames are the terminal's bytes both ways; text frames are
// JSON: {"resize": [cols, rows]} to the server; {"status": "ended", "exit_code": N} or {"error": "..."} back.
(function () {
  "use strict";

  const section = document.getElementById("shell");
  const button = document.getElementById("shell-open");
  if (!section || !button || !window.Terminal || !window.FitAddon) {
    return;
  }
  const status = document.getElementById("shell-status");
  const box = document.getElementById("terminal");
  const encoder = new TextEncoder();
  let current = null;

  function say(text) {
    status.textContent = text;
  }

  function socketUrl(terminal) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${section.dataset.ws}?cols=${terminal.cols}&rows=${terminal.rows}`;
  }

  function startTerminal() {
    box.hidden = false;
    box.replaceChildren();
    const terminal = new window.Terminal({cursorBlink: true, scrollback: 5000});
    const fit = new window.FitAddon.FitAddon();
    terminal.loadAddon(fit);
    terminal.open(box);
    fit.fit();
    // xterm draws only while on screen, and the terminal opens below the button.
    box.scrollIntoView({block: "nearest"});
    return {terminal, fit};
  }

  function open() {
    if (current) {
      current.close();
    }
    const {terminal, fit} = startTerminal();
    const socket = new WebSocket(socketUrl(terminal));
    socket.binaryType = "arraybuffer";
    let finished = false;
    const send = (data) => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(data);
      }
    };
    const refit = () => fit.fit();

    // Keys and pastes as UTF-8; onBinary carries raw bytes (some mouse reports) one per character.
    terminal.onData((data) => send(encoder.encode(data)));
    terminal.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    terminal.onResize(({cols, rows}) => send(JSON.stringify({resize: [cols, rows]})));
    window.addEventListener("resize", refit);

    socket.onopen = () => {
      say("connected");
      terminal.focus();
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") {
        terminal.write(new Uint8Array(event.data));
        return;
      }
      const message = JSON.parse(event.data);
      if (message.status === "ended") {
        finished = true;
        section.dataset.exitCode = message.exit_code;
        say("ended");
      } else if (message.error) {
        finished = true;
        say(message.error);
      }
    };
    const session = {
      close() {
        socket.close();
      },
    };
    socket.onclose = () => {
      window.removeEventListener("resize", refit);
      terminal.options.disableStdin = true;  // what was printed stays readable
      if (current !== session) {
        terminal.dispose();  // replaced by a newer shell
        return;
      }
      button.disabled = false;
      if (!finished) {
        say("disconnected");
      }
    };

    button.disabled = true;
    say("connecting");
    current = session;
  }

  button.hidden = false;
  button.addEventListener("click", open);
  // Leaving the page closes the socket at once, so the server hangs the shell up.
  window.addEventListener("pagehide", () => {
    if (current) {
      current.close();
    }
  });
})();
