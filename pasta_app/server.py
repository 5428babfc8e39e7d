"""The web app: FastAPI pages rendered on the server, plain HTML forms, no JavaScript.

Routes::

    GET  /join/{token}      a rater's (or the admin's) invite link: sets an HttpOnly cookie
    GET  /                  start a session (a request box), the rater's unfinished sessions
    POST /sessions          start a session on the typed request
    GET  /s/{id}            the shown slate: L columns of M images (prompt cards in worlds
                            without pixels); from turn 2, Better / Same / Worse
    POST /s/{id}/choose     the rater's column (and answer); the next slate
    GET  /admin/export      the admin's zip of the records
    GET  /healthz           liveness (no data)

Every page but ``/healthz`` and ``/join`` needs a token (the cookie, or
``Authorization: Bearer TOKEN``); a rater sees only their own sessions. Text
from people is HTML-escaped wherever it is shown, and the Content-Security-
Policy forbids scripts. Request bodies are bounded (:data:`MAX_BODY`, and a
body without a declared length is refused), and so is each client's request
rate (:class:`RateLimit`). A POST from another site is refused
(:func:`cross_site`: its ``Sec-Fetch-Site`` or ``Origin`` says so), so a
form elsewhere cannot act under a rater's cookie. Needs
``pip install 'pasta-t2i[serve]'``.
"""

from __future__ import annotations

import base64
import html
import io
import signal
import threading
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from pasta_app.records import ANSWERS, DataFolder
from pasta_app.sessions import MAX_PROMPT, Session, SessionError, Sessions
from simulators.errors import PastaError

COOKIE = "pasta_token"
#: Largest request body accepted, in bytes.
MAX_BODY = 4096
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; " \
      "frame-ancestors 'none'; base-uri 'none'"

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:72rem;color:#222}
h1{font-size:1.3rem} .slate{display:grid;grid-template-columns:repeat(var(--cols),1fr);gap:1rem}
.column{border:1px solid #bbb;border-radius:.5rem;padding:.6rem;display:flex;flex-direction:column;gap:.5rem}
.column img{width:100%;image-rendering:pixelated;border-radius:.3rem}
.images{display:grid;grid-template-columns:1fr 1fr;gap:.3rem}
.card{background:#f3f1ea;border-radius:.3rem;padding:.6rem;min-height:5rem}
button{font-size:1rem;padding:.4rem .8rem;cursor:pointer} .answer{margin:1rem 0;font-size:1.05rem}
.error{color:#a00;font-weight:600} .request{font-style:italic}
"""


class RateLimit:
    """A token bucket per client: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float = 20.0, burst: int = 40):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take one request from ``client``'s bucket; whether there was one."""
        t = time.monotonic()
        with self.lock:
            level, last = self.buckets.get(client, (float(self.burst), t))
            level = min(float(self.burst), level + (t - last) * self.rate)
            if level < 1.0:
                self.buckets[client] = (level, t)
                return False
            self.buckets[client] = (level - 1.0, t)
            if len(self.buckets) > 10000:  # forget idle clients
                self.buckets = {k: v for k, v in self.buckets.items() if t - v[1] < 60}
            return True


def create_app(folder: DataFolder, sessions: Sessions, prompts: list[str] | None = None,
               rate: RateLimit | None = None):
    """The FastAPI app over a data folder and its sessions.

    Args:
        folder: Where records go (and the tokens live).
        sessions: The session manager.
        prompts: Requests to offer raters (one is pre-filled at random); ``None``: an empty box.
        rate: The per-client rate limit (default: 20 requests/s, bursts of 40).
    """
    app = FastAPI(title="pasta-t2i", docs_url=None, redoc_url=None, openapi_url=None)
    limit = rate or RateLimit()

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.method not in ("GET", "POST", "HEAD"):
            return PlainTextResponse("method not allowed", status_code=405)
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return PlainTextResponse("a request body needs a Content-Length", status_code=411)
            if int(length) > MAX_BODY:
                return PlainTextResponse(f"request body over {MAX_BODY} bytes", status_code=413)
            if cross_site(request.headers, request.url.scheme):
                return HTMLResponse(_page("Refused", "<p>This form was sent from another site, so nothing was "
                                                     "recorded. Open the app from your invite link and use its own "
                                                     "pages.</p>"), status_code=403)
        path = request.url.path
        try:
            request.state.rater = folder.who(_token(request))  # resolved once per request; the routes read it
            joining = folder.who(path[6:]) if path.startswith("/join/") else None
        except PastaError as exc:  # a damaged access file: say so, no traceback
            return PlainTextResponse(f"the app cannot check invites now: {exc}", status_code=503)
        # A bucket per rater; requests with no valid token share their address's bucket (made-up tokens
        # do not buy more requests).
        client = request.state.rater or joining or (request.client.host if request.client else "?")
        if path != "/healthz" and not limit.allow(client):
            return PlainTextResponse("too many requests; slow down", status_code=429,
                                     headers={"Retry-After": "1"})
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    def who(request: Request) -> str:
        rater = request.state.rater  # the guard's reading of the request's token
        if rater is None:
            raise _Denied()
        return rater

    @app.exception_handler(PastaError)
    async def failed(request: Request, exc: PastaError):  # e.g. a full disk: nothing was recorded
        return HTMLResponse(_page("Not recorded", f"<p>{_e(exc)}</p><p>Go back and try again.</p>"),
                            status_code=503)

    @app.exception_handler(_Denied)
    async def denied(request: Request, exc: _Denied):
        return HTMLResponse(_page("Not signed in", "<p>Open your invite link to take part.</p>"), status_code=401)

    @app.get("/healthz")
    def healthz():
        return PlainTextResponse("ok")

    @app.get("/join/{token}")
    def join(token: str):
        rater = folder.who(token)
        if rater is None:
            return HTMLResponse(_page("Invalid invite", "<p>This invite link is not valid.</p>"), status_code=403)
        response = RedirectResponse("/admin" if rater == "admin" else "/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
        return response

    @app.get("/")
    def home(request: Request):
        rater = who(request)
        if rater == "admin":
            return RedirectResponse("/admin", status_code=303)
        return HTMLResponse(_home(rater, sessions.of(rater), _offer(prompts)))

    @app.post("/sessions")
    def start(request: Request, prompt: str = Form(..., max_length=MAX_PROMPT * 4)):
        rater = who(request)
        if rater == "admin":
            return PlainTextResponse("the admin token does not rate", status_code=403)
        try:
            session = sessions.start(rater, prompt)
        except SessionError as exc:
            return HTMLResponse(_home(rater, sessions.of(rater), prompt, error=str(exc)), status_code=400)
        return RedirectResponse(f"/s/{session.id}", status_code=303)

    @app.get("/s/{sid}")
    def show(request: Request, sid: str):
        rater = who(request)
        finished = sessions.request_of_finished(rater, sid)
        if finished is not None:
            return HTMLResponse(_finished(finished))
        try:
            session = sessions.get(rater, sid)
        except SessionError as exc:
            return HTMLResponse(_page("Not found", f"<p>{_e(exc)}</p>"), status_code=404)
        return HTMLResponse(_session(session))

    @app.post("/s/{sid}/choose")
    def choose(request: Request, sid: str, column: int = Form(...), answer: str | None = Form(None)):
        rater = who(request)
        try:
            session = sessions.get(rater, sid)
            sessions.choose(session, column, answer)
        except SessionError as exc:
            if "no such session" in str(exc):
                return HTMLResponse(_page("Not found", f"<p>{_e(exc)}</p>"), status_code=404)
            if "finished" in str(exc):
                return HTMLResponse(_page("Session finished", f"<p>{_e(exc)}</p>"), status_code=400)
            return HTMLResponse(_session(session, error=str(exc)), status_code=400)
        return RedirectResponse(f"/s/{sid}", status_code=303)

    @app.get("/admin")
    def admin(request: Request):
        if who(request) != "admin":
            return PlainTextResponse("admins only", status_code=403)
        n_sessions, n_turns = len(folder.sessions()), len(folder.turns())
        return HTMLResponse(_page("pasta-t2i: admin", f"<p>{n_sessions} sessions, {n_turns} turns recorded.</p>"
                                  '<p><a href="/admin/export">Download the records (zip)</a></p>'))

    @app.get("/admin/export")
    def export(request: Request):
        if who(request) != "admin":
            return PlainTextResponse("admins only", status_code=403)
        return Response(folder.export(), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="pasta-records.zip"'})

    return app


class _Denied(Exception):
    """No valid token."""


def cross_site(headers, scheme: str) -> bool:
    """Whether a request's headers say it comes from another site.

    Browsers send ``Sec-Fetch-Site`` (anything but ``same-origin`` or
    ``none``, a typed address, is refused) and ``Origin`` on form posts (it
    must be this app's own ``scheme://host``; under the app's
    ``Referrer-Policy: no-referrer`` browsers send ``null``, which leaves the
    decision to ``Sec-Fetch-Site``). A request with neither (a
    script or an old browser) is not refused: the cookie's
    ``SameSite=Strict`` already keeps it from cross-site forms.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None or origin == "null":  # "null": the app's no-referrer policy hides it; Sec-Fetch-Site decided
        return False
    host = headers.get("host", "")
    return origin.rstrip("/").lower() != f"{scheme}://{host}".lower()


def _token(request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE)


def _offer(prompts: list[str] | None) -> str:
    if not prompts:
        return ""
    import secrets

    return prompts[secrets.randbelow(len(prompts))]


def _e(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style>"
            f"</head><body><h1>{_e(title)}</h1>{body}</body></html>")


def _home(rater: str, open_sessions: list[Session], prompt: str, error: str | None = None) -> str:
    err = f'<p class="error" id="error">{_e(error)}</p>' if error else ""
    items = "".join(f'<li><a href="/s/{_e(s.id)}">{_e(s.prompt)}</a> (turn {s.turn + 1})</li>'
                    for s in open_sessions if not s.done)
    mine = f"<h2>Your unfinished sessions</h2><ul>{items}</ul>" if items else ""
    return _page("pasta-t2i: personalised image generation", f"""
{err}<p>Signed in as {_e(rater)}. Describe an image; over a few turns the system proposes
variations, and you pick the column you like best.</p>
<form method="post" action="/sessions">
<label for="prompt">Your request</label><br>
<input id="prompt" name="prompt" size="60" maxlength="{MAX_PROMPT}" value="{_e(prompt)}" required>
<button id="start" type="submit">Start</button></form>{mine}""")


def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finished(prompt: str) -> str:
    return _page("Session finished", f'<p class="request">Your request: “{_e(prompt)}”</p>'
                 '<p id="finished">Thank you: every turn is recorded.</p>'
                 '<p><a id="again" href="/">Start another session</a></p>')


def _session(session: Session, error: str | None = None) -> str:
    H = session.env.config.horizon
    head = f'<p class="request">Your request: “{_e(session.prompt)}”</p>'
    if session.done:
        return _finished(session.prompt)
    err = f'<p class="error" id="error">{_e(error)}</p>' if error else ""
    texts, pixels = session.texts(), session.pixels()
    if pixels is not None and (session.encoded is None or session.encoded[0] != session.turn):
        session.encoded = (session.turn, [[_png(p) for p in column] for column in pixels])
    columns = []
    for j, text in enumerate(texts):
        if session.encoded is not None and pixels is not None:
            shown = '<div class="images">' + "".join(
                f'<img alt="image {m + 1} of column {j + 1}" src="{uri}">'
                for m, uri in enumerate(session.encoded[1][j])) + "</div>"
        else:
            shown = ""
        columns.append(f'<div class="column" id="column-{j}">{shown}<div class="card">{_e(text)}</div>'
                       f'<button type="submit" name="column" value="{j}" id="choose-{j}">Choose this one</button>'
                       "</div>")
    question = ""
    if session.turn >= 1:
        radios = "".join(f'<label><input type="radio" name="answer" value="{a}" id="answer-{a.lower()}" required> '
                         f"{a}</label> " for a in ANSWERS)
        question = f'<fieldset class="answer"><legend>Compared with the last turn, these images are:</legend>' \
                   f"{radios}</fieldset>"
    body = f"""{head}{err}<p>Turn {session.turn + 1} of {H}: pick the column you like best.</p>
<form method="post" action="/s/{_e(session.id)}/choose">{question}
<div class="slate" style="--cols:{len(texts)}">{''.join(columns)}</div></form>"""
    return _page("pasta-t2i", body)


def serve(data: str, agents: list[str], world: str = "synthetic", world_options: dict | None = None,
          host: str = "127.0.0.1", port: int = 8000, prompts: list[str] | None = None, raters: int = 0,
          horizon: int = 5, rate: float = 20.0, seed: int | None = None) -> None:
    """Run the app with uvicorn until stopped (prints invite links for tokens made now)."""
    import uvicorn

    folder = DataFolder.open(data)
    new = folder.add_raters(raters) if raters or not folder.access().get("admin") else {}
    sessions = Sessions(folder, agents, world, world_options, horizon, seed)
    base = f"http://{host}:{port}"
    for who, token in new.items():
        print(f"{who}: {base}/join/{token}", flush=True)
    print(f"serving {len(sessions.live)} unfinished sessions from {data} on {base} (Ctrl-C stops)", flush=True)
    app = create_app(folder, sessions, prompts, RateLimit(rate, max(1, int(2 * rate))))

    class Server(uvicorn.Server):
        """uvicorn's server, remembering the signal that stopped it."""

        signalled: int | None = None

        def handle_exit(self, sig, frame):
            self.signalled = sig
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    server.run()
    if server.signalled == signal.SIGINT:  # Ctrl-C: stopped cleanly, reported as an interrupt (exit 130)
        raise KeyboardInterrupt
