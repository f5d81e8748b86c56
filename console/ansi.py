"""Terminal colours (ANSI SGR escape codes) as HTML: escaped text in ``<span class="ansi-...">``.

A program's output is untrusted text: every character of it leaves here
escaped, and the only markup is what this module writes. What a terminal
would act on besides colours (cursor moves, window titles, other control
characters) is dropped; a carriage return keeps what was written after it,
as a terminal would show a progress line once it is finished::

    "\\x1b[1;31mfailed\\x1b[0m <b>"  ->  '<span class="ansi-bold ansi-red">failed</span> &lt;b&gt;'

Colours 0-15 become classes (the page's CSS picks the shades), the 256-colour
palette and 24-bit colours an inline ``color``/``background-color`` made of
numbers only. ``highlight`` wraps each case-insensitive occurrence of a
search term in ``<mark>`` (within one run of equally styled text).
"""

from __future__ import annotations

import re

NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"]

# CSI sequences (ESC [ ... final byte), OSC strings (ESC ] ... BEL or ESC \), any other ESC + one byte,
# and the C0 control characters a page cannot show (tab stays).
_ESCAPE = re.compile(r"\x1b\[([0-9;:?<=>]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?"
                     r"|[\x00-\x08\x0b-\x1f\x7f]", re.S)
_CUBE = [0, 95, 135, 175, 215, 255]


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_html(text: str, highlight: str | None = None) -> str:
    """One line of output as HTML (a trailing newline is dropped)."""
    text = text.rstrip("\n")
    marker = _marker(highlight)
    if _CONTROLS.search(text) is None:  # the common case: no escape, no carriage return
        return _text(text, marker)
    text = _last_overwrite(text)
    out: list[str] = []
    style = _Style()
    pos = 0
    for match in _ESCAPE.finditer(text):
        if match.start() > pos:
            out.append(style.wrap(_text(text[pos:match.start()], marker)))
        pos = match.end()
        if match.group(2) == "m":
            style.apply(match.group(1))
    if pos < len(text):
        out.append(style.wrap(_text(text[pos:], marker)))
    return "".join(out)


def _last_overwrite(text: str) -> str:
    """What a terminal shows of a line with carriage returns: the text after the last one (CRLF is one end)."""
    stripped = text.rstrip("\r")
    if "\r" not in stripped:
        return stripped
    return stripped.rsplit("\r", 1)[1]


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # ESC and CR among them


def _marker(highlight: str | None):
    if not highlight:
        return None
    return re.compile(re.escape(highlight), re.IGNORECASE)


def _text(text: str, marker) -> str:
    if marker is None:
        return escape(text)
    out, pos = [], 0
    for match in marker.finditer(text):
        out.append(escape(text[pos:match.start()]))
        out.append(f"<mark>{escape(match.group())}</mark>")
        pos = match.end()
    out.append(escape(text[pos:]))
    return "".join(out)


class _Style:
    """The graphic rendition in force: what SGR codes set, as classes and inline colours."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.fg: str | None = None  # a class ("ansi-red") or a CSS colour ("#5f87af")
        self.bg: str | None = None
        self.flags: set[str] = set()

    def apply(self, parameters: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in re.split("[;:]", parameters)] if parameters else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            i += 1
            if code == 0:
                self.reset()
            elif code in _FLAG_ON:
                self.flags.add(_FLAG_ON[code])
            elif code in _FLAG_OFF:
                self.flags -= _FLAG_OFF[code]
            elif 30 <= code <= 37:
                self.fg = f"ansi-{NAMES[code - 30]}"
            elif 90 <= code <= 97:
                self.fg = f"ansi-bright-{NAMES[code - 90]}"
            elif 40 <= code <= 47:
                self.bg = f"ansi-bg-{NAMES[code - 40]}"
            elif 100 <= code <= 107:
                self.bg = f"ansi-bg-bright-{NAMES[code - 100]}"
            elif code == 39:
                self.fg = None
            elif code == 49:
                self.bg = None
            elif code in (38, 48):
                colour, i = _extended_colour(codes, i, background=code == 48)
                if colour is not None:
                    if code == 38:
                        self.fg = colour
                    else:
                        self.bg = colour

    def wrap(self, html: str) -> str:
        if not html or (self.fg is None and self.bg is None and not self.flags):
            return html
        classes = sorted(self.flags)
        styles = []
        for value, prop in ((self.fg, "color"), (self.bg, "background-color")):
            if value is None:
                continue
            if value.startswith("ansi-"):
                classes.append(value)
            else:
                styles.append(f"{prop}:{value}")
        attributes = f' class="{" ".join(classes)}"' if classes else ""
        if styles:
            attributes += f' style="{";".join(styles)}"'
        return f"<span{attributes}>{html}</span>"


_FLAG_ON = {1: "ansi-bold", 2: "ansi-dim", 3: "ansi-italic", 4: "ansi-underline", 7: "ansi-inverse",
            9: "ansi-strike"}
_FLAG_OFF = {22: {"ansi-bold", "ansi-dim"}, 23: {"ansi-italic"}, 24: {"ansi-underline"}, 27: {"ansi-inverse"},
             29: {"ansi-strike"}}


def _extended_colour(codes: list[int], i: int, background: bool) -> tuple[str | None, int]:
    """38;5;N (palette) or 38;2;R;G;B (24 bits), from codes[i] on: (colour, index after it)."""
    if i < len(codes) and codes[i] == 5 and i + 1 < len(codes):
        return _palette(codes[i + 1], background), i + 2
    if i < len(codes) and codes[i] == 2 and i + 3 < len(codes):
        r, g, b = (min(c, 255) for c in codes[i + 1:i + 4])
        return f"#{r:02x}{g:02x}{b:02x}", i + 4
    return None, len(codes)  # malformed: ignore the rest, as terminals do


def _palette(n: int, background: bool) -> str | None:
    prefix = "ansi-bg-" if background else "ansi-"
    if n < 8:
        return prefix + NAMES[n]
    if n < 16:
        return prefix + "bright-" + NAMES[n - 8]
    if n < 232:
        n -= 16
        r, g, b = _CUBE[n // 36], _CUBE[n // 6 % 6], _CUBE[n % 6]
        return f"#{r:02x}{g:02x}{b:02x}"
    if n < 256:
        level = 8 + (n - 232) * 10
        return f"#{level:02x}{level:02x}{level:02x}"
    return None
