"""The studio's sign-in page (`/signin`), shown when `server.api_keys` is set and the browser has no session.

A plain HTML form, served without NiceGUI so that nothing behind the key has to be opened for it. A right
key sets the session cookie (a digest of the key, for this browser session, HttpOnly; see
app/web/auth.py) and goes on to the page that was asked for; `/signout` forgets it.
"""
from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..web.auth import SESSION_COOKIE, SIGN_IN_PATH, Keys
from ..web.security import session_cookie

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · AI Artist</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f4f8; display: grid; place-items: center;
       min-height: 100vh; margin: 0; }}
form {{ background: #fff; padding: 2rem; border-radius: 12px; box-shadow: 0 2px 12px #0002; width: min(360px, 90vw); }}
h1 {{ font-size: 1.25rem; margin: 0 0 1rem; }}
label {{ display: block; font-size: .9rem; margin-bottom: .35rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .6rem; font-size: 1rem; border: 1px solid #bbb;
        border-radius: 6px; }}
button {{ margin-top: 1rem; width: 100%; padding: .6rem; font-size: 1rem; border: 0; border-radius: 6px;
         background: #5b5bd6; color: #fff; cursor: pointer; }}
.error {{ color: #c62828; font-size: .9rem; margin-top: .75rem; }}
</style></head>
<body><form method="post" action="{action}">
<h1>AI Artist</h1>
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
{error}
</form></body></html>
"""


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (no `//host` or scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def sign_in_page(next_path: str, error: str = "") -> str:
    return PAGE.format(
        action=SIGN_IN_PATH,
        next=html.escape(safe_next(next_path), quote=True),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
    )


def register(app: FastAPI, keys: Keys) -> None:
    @app.get(SIGN_IN_PATH, include_in_schema=False)
    def sign_in_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(sign_in_page(next), headers={"Cache-Control": "no-store"})

    @app.post(SIGN_IN_PATH, include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        next_path = (form.get("next") or ["/"])[0]
        if not keys.accepts(key):
            log.warning("failed sign-in to the studio from %s", request.client.host if request.client else "unknown")
            return HTMLResponse(sign_in_page(next_path, "That key is not right."), status_code=401)
        response = RedirectResponse(safe_next(next_path), status_code=303)
        response.headers.append("set-cookie", session_cookie(key, request.url.scheme == "https"))
        return response

    @app.get("/signout", include_in_schema=False)
    def sign_out() -> Response:
        response = RedirectResponse(SIGN_IN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
