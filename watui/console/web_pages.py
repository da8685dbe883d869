"""The pages ``watui web`` serves: the console page, and the short pages that say why not.

The console page loads textual-serve's terminal script and styles, and the Roboto Mono font
that ships with textual-serve, all from this server: nothing is fetched from a third party,
so the console works offline and tells no one who opens it. It fits a phone's width: the
viewport is the device's, and a narrow screen gets a smaller font (unless ``?fontsize=`` says).
"""

from __future__ import annotations

import html

from aiohttp import web

NARROW_WIDTH = 600
"""CSS pixels below which the terminal's font shrinks so that more columns fit."""
NARROW_FONT_SIZE = 12
DEFAULT_FONT_SIZE = 16

_STYLE = """
@font-face {
  font-family: "Roboto Mono";
  src: url("%(static)sfonts/RobotoMono-VariableFont_wght.ttf") format("truetype");
  font-weight: 100 700;
}
html, body { margin: 0; height: 100%%; background: #0c181f; }
body { font-family: "Roboto Mono", monospace; color: rgba(255, 255, 255, 0.95); }
.textual-terminal { width: 100vw; height: 100vh; opacity: 0; transition: opacity 0.3s ease-out; }
body.-first-byte .textual-terminal { opacity: 1; }
.notice { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
          text-align: center; padding: 1rem; box-sizing: border-box; }
body.-first-byte .loading { display: none; }
.ended, #start { display: none; }
body.-closed .ended { display: flex; background: #0c181f; z-index: 10; }
#start.-delay { display: block; }
button { font: inherit; padding: 0.8rem 1.6rem; margin: 1rem auto 0; display: block; border: none;
         background: #5e0ba7; color: inherit; cursor: pointer; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>%(title)s</title>
<link rel="stylesheet" href="%(static)scss/xterm.css">
<style>%(style)s</style>
<script src="%(static)sjs/textual.js"></script>
</head>
<body>
<div class="notice loading"><div>%(title)s<button type="button" id="start" onclick="restart()">Start</button></div></div>
<div class="notice ended"><div>The console ended.<button type="button" onclick="restart()">Open it again</button></div></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="%(websocket)s"
     data-font-size="%(font_size)s"></div>
<script>
  function restart() {
    const params = new URLSearchParams(window.location.search);
    params.delete("delay");
    window.location.href = window.location.pathname + "?" + params.toString();
  }
  if (!%(font_fixed)s && window.innerWidth < %(narrow)d) {
    document.getElementById("terminal").dataset.fontSize = "%(narrow_font)d";
  }
</script>
</body>
</html>
"""


def console_page(*, title: str, static_url: str, websocket_url: str, font_size: int | None) -> web.Response:
    values = {
        "title": html.escape(title),
        "static": html.escape(static_url),
        "websocket": html.escape(websocket_url),
        "font_size": font_size or DEFAULT_FONT_SIZE,
        "font_fixed": "true" if font_size else "false",
        "narrow": NARROW_WIDTH,
        "narrow_font": NARROW_FONT_SIZE,
    }
    values["style"] = _STYLE % values
    return web.Response(text=_PAGE % values, content_type="text/html", headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}

_REFUSAL = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>watui: %(title)s</title>
<style>body { font-family: monospace; background: #0c181f; color: #eee; margin: 2rem; max-width: 40rem; }</style>
</head><body><h1>%(title)s</h1><p>%(message)s</p></body></html>
"""


def refusal(status: int, title: str, message: str) -> web.Response:
    """A short page (and the same words for a client that reads only the status line)."""
    body = _REFUSAL % {"title": html.escape(title), "message": html.escape(message)}
    return web.Response(status=status, text=body, content_type="text/html", headers=_NO_STORE)
