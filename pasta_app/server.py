"""The web app: FastAPI pages rendered on the server, plain HTML forms, no JavaScript.

Routes::

    GET  /join/{token}      a rater's (or the admin's) invite link: sets an HttpOnly cookie; a
                            browser signed in as someone else is asked before it switches
    POST /join/{token}      the switch, confirmed
    GET  /                  start a session (a request box), the rater's unfinished sessions
    POST /sessions          start a session on the typed request (or resume the open one)
    GET  /s/{id}            the shown slate: L columns of M images (prompt cards in worlds
                            without pixels); from turn 2, the last choice and Better / Same /
                            Worse; at the end, the completion code
    POST /s/{id}/choose     the rater's column (and answer) with the slate's turn token
    GET  /admin             the organiser's dashboard: progress per rater and agent, the live
                            Better / Same / Worse table, invites, completion codes, the export
    POST /admin/invites     make invites (their links are shown once)
    POST /admin/revoke      revoke a rater's invite
    GET  /admin/export      the records as a zip
    GET  /healthz           liveness (no data)

Every page but ``/healthz`` and ``/join`` needs a token (the cookie, or
``Authorization: Bearer TOKEN``); a rater sees only their own sessions. Text
from people is HTML-escaped wherever it is shown, and the Content-Security-
Policy forbids scripts. Request bodies are bounded (:data:`MAX_BODY`, and a
body without a declared length is refused), and so is each client's request
rate (:class:`RateLimit`). A POST from another site is refused
(:func:`cross_site`: its ``Sec-Fetch-Site`` or ``Origin`` says so), so a
form elsewhere cannot act under a rater's cookie; a choice must carry the
shown slate's turn token, so a form sent twice records once. Errors are
pages that say what to do next. Needs ``pip install 'pasta-t2i[serve]'``.
"""

from __future__ import annotations

import base64
import html
import io
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pasta_app.records import ANSWERS, DataFolder
from pasta_app.sessions import MAX_PROMPT, Session, SessionError, SessionLimit, Sessions, StaleTurn
from simulators.errors import PastaError

COOKIE = "pasta_token"
#: A second cookie naming who this browser is signed in as (``SameSite=Lax``, so it comes along when
#: an invite link is followed from elsewhere): the invite page asks before switching to another rater.
WHO = "pasta_who"
#: Largest request body accepted, in bytes.
MAX_BODY = 4096
#: Most invites the dashboard makes at once.
MAX_INVITES = 500
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; " \
      "frame-ancestors 'none'; base-uri 'none'"

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:1.5rem auto;padding:0 1rem;max-width:72rem;color:#222;line-height:1.4}
h1{font-size:1.3rem} h2{font-size:1.1rem;margin-top:1.5rem}
.slate{display:grid;grid-template-columns:repeat(var(--cols),minmax(0,1fr));gap:1rem}
.column{border:1px solid #bbb;border-radius:.5rem;padding:.6rem;display:flex;flex-direction:column;gap:.5rem}
.column img,.last img{width:100%;image-rendering:pixelated;border-radius:.3rem}
.images{display:grid;grid-template-columns:1fr 1fr;gap:.3rem}
.card,.lastcard{background:#f3f1ea;border-radius:.3rem;padding:.6rem;min-height:3rem;overflow-wrap:anywhere}
.kind{font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:#666}
button{font-size:1rem;padding:.5rem .9rem;cursor:pointer}
.column button{margin-top:auto}
.ask{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start;margin:1rem 0}
.answer{flex:1 1 16rem;font-size:1.05rem;border:1px solid #bbb;border-radius:.5rem}
.answer label{display:inline-block;padding:.3rem .6rem .3rem 0}
.last{flex:0 1 18rem;border:1px dashed #999;border-radius:.5rem;padding:.6rem}
.last .images{grid-template-columns:repeat(4,1fr)}
.error{color:#a00;font-weight:600} .note{background:#eef4fb;padding:.5rem .8rem;border-radius:.3rem}
.request{font-style:italic;overflow-wrap:anywhere}
#prompt{width:100%;max-width:40rem;font-size:1rem;padding:.4rem}
.code{font-family:ui-monospace,monospace;font-size:1.6rem;letter-spacing:.1em;background:#f3f1ea;
      padding:.4rem .8rem;border-radius:.3rem;display:inline-block}
.wide{overflow-x:auto;max-width:100%} table{border-collapse:collapse;font-size:.9rem}
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;white-space:nowrap}
td form{display:inline} td button{font-size:.8rem;padding:.15rem .5rem}
.link{font-family:ui-monospace,monospace;font-size:.8rem;overflow-wrap:anywhere;white-space:normal}
@media (max-width:40rem){body{margin:.8rem auto;padding:0 .7rem}.slate{grid-template-columns:minmax(0,1fr)}
  .last{flex-basis:100%}}
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
            return _error(405, "Not allowed", "This address takes only the app's own pages and forms.")
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "Not recorded", "The form came without a declared length, so nothing was "
                              "recorded.", "Send it again from the app's own page.")
            if int(length) > MAX_BODY:
                return _error(413, "Not recorded", f"The form was over {MAX_BODY} bytes, so nothing was recorded.",
                              "Go back and send a shorter request.")
            if cross_site(request.headers, request.url.scheme):
                return _error(403, "Refused", "This form was sent from another site, so nothing was recorded.",
                              "Open the app from your invite link and use its own pages.")
        path = request.url.path
        try:
            request.state.rater = folder.who(_token(request))  # resolved once per request; the routes read it
            joining = folder.who(path[6:]) if path.startswith("/join/") else None
        except PastaError as exc:  # a damaged access file: say so, no traceback
            return _error(503, "Unavailable", f"The app cannot check invites now: {exc}",
                          "Tell the study's organiser.")
        # A bucket per rater; requests with no valid token share their address's bucket (made-up tokens
        # do not buy more requests).
        client = request.state.rater or joining or (request.client.host if request.client else "?")
        if path != "/healthz" and not limit.allow(client):
            response = _error(429, "Too many requests", "This browser sent requests faster than the app takes them.",
                              "Wait a second, then reload the page.")
            response.headers["Retry-After"] = "1"
            return response
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

    def admin_only(request: Request) -> None:
        if who(request) != "admin":
            raise _Denied("admin")

    @app.exception_handler(PastaError)
    async def failed(request: Request, exc: PastaError):  # e.g. a full disk: nothing was recorded
        return _error(503, "Not recorded", str(exc), "Go back and try again in a moment.")

    @app.exception_handler(_Denied)
    async def denied(request: Request, exc: _Denied):
        if exc.args and exc.args[0] == "admin":
            return _error(403, "For the organiser only", "This page is the study organiser's.",
                          '<a href="/">Back to your sessions</a>')
        return _error(401, "Not signed in", "This browser holds no valid invite.",
                      "Open the invite link you were sent (ask the study's organiser if you lost it).")

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError):
        return _error(400, "Not recorded", "The form was incomplete, so nothing was recorded.",
                      '<a href="/">Back to your sessions</a> and send it from the app\'s own page.')

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return _error(404, "Not found", "There is no such page.", '<a href="/">Back to the start</a>')
        return _error(exc.status_code, "Not possible", str(exc.detail), '<a href="/">Back to the start</a>')

    @app.get("/healthz")
    def healthz():
        return PlainTextResponse("ok")

    @app.get("/join/{token}")
    def join(request: Request, token: str):
        rater = folder.who(token)
        if rater is None:
            return _invalid_invite()
        current = request.state.rater or request.cookies.get(WHO)  # the guard read the token; else the marker
        if current and current != rater and current in (*folder.raters(), "admin"):
            return HTMLResponse(_switch(current, rater, token), status_code=409)
        return _signed_in(rater, token)

    @app.post("/join/{token}")
    def switch(token: str):
        rater = folder.who(token)
        if rater is None:
            return _invalid_invite()
        return _signed_in(rater, token)

    @app.get("/")
    def home(request: Request):
        rater = who(request)
        if rater == "admin":
            return RedirectResponse("/admin", status_code=303)
        return HTMLResponse(_home(rater, sessions.open_of(rater), _offer(prompts)))

    @app.post("/sessions")
    def start(request: Request, prompt: str = Form(..., max_length=MAX_PROMPT * 4)):
        rater = who(request)
        if rater == "admin":
            return _error(403, "For raters only", "The organiser's invite does not rate.",
                          "Open a rater's invite in another browser to try the study.")
        try:
            session, resumed = sessions.start(rater, prompt)
        except SessionLimit as exc:
            return HTMLResponse(_home(rater, sessions.open_of(rater), prompt, error=str(exc)), status_code=429)
        except SessionError as exc:
            return HTMLResponse(_home(rater, sessions.open_of(rater), prompt, error=str(exc)), status_code=400)
        return RedirectResponse(f"/s/{session.id}" + ("?resumed=1" if resumed else ""), status_code=303)

    @app.get("/s/{sid}")
    def show(request: Request, sid: str, resumed: int = 0):
        rater = who(request)
        try:
            entry = sessions.entry(rater, sid)
            if entry.finished:
                return HTMLResponse(_finished(entry.prompt, sessions.code(sid)))
            session = sessions.get(rater, sid)
        except SessionError as exc:
            return _session_error(exc)
        note = ("You already have an unfinished session; finish it before starting another." if resumed else None)
        return HTMLResponse(_session(session, note=note))

    @app.post("/s/{sid}/choose")
    def choose(request: Request, sid: str, column: str = Form(""), answer: str | None = Form(None),
               turn: str | None = Form(None)):
        rater = who(request)
        try:
            session = sessions.get(rater, sid)
        except SessionError as exc:
            return _session_error(exc)
        try:
            sessions.choose(session, int(column) if column.strip().isdigit() else -1, answer, turn)
        except StaleTurn as exc:
            current = sessions.get(rater, sid) if not session.done else session
            return HTMLResponse(_session(current, error=str(exc)), status_code=409)
        except SessionError as exc:
            if session.done:
                return _session_error(exc)
            return HTMLResponse(_session(session, error=str(exc)), status_code=400)
        return RedirectResponse(f"/s/{sid}", status_code=303)

    @app.get("/admin")
    def admin(request: Request):
        admin_only(request)
        return HTMLResponse(_dashboard(folder, sessions))

    @app.post("/admin/invites")
    def invite(request: Request, count: str = Form("")):
        admin_only(request)
        n = int(count) if count.strip().isdigit() else 0
        if not 1 <= n <= MAX_INVITES:
            return _error(400, "No invites made", f"Give a number of invites from 1 to {MAX_INVITES}.",
                          '<a href="/admin">Back to the dashboard</a>')
        links = {r: f"{_base(request)}/join/{t}" for r, t in folder.add_raters(n).items()}
        rows = "".join(f"<tr><td>{_e(r)}</td><td class=\"link\">{_e(link)}</td></tr>" for r, link in links.items())
        return HTMLResponse(_page("New invites", f"""<p class="note">Copy these links now: only their hashes are
kept, so they cannot be shown again (a lost link is revoked and replaced).</p>
<div class="wide"><table id="invites"><tr><th>rater</th><th>invite link</th></tr>{rows}</table></div>
<p><a href="/admin">Back to the dashboard</a></p>"""))

    @app.post("/admin/revoke")
    def revoke(request: Request, rater: str = Form("")):
        admin_only(request)
        try:
            folder.revoke(rater)
        except KeyError:
            return _error(404, "No such rater", f"No rater is called {rater!r}.",
                          '<a href="/admin">Back to the dashboard</a>')
        return RedirectResponse("/admin", status_code=303)

    @app.get("/admin/export")
    def export(request: Request):
        admin_only(request)
        return Response(folder.export({"completion_codes.csv": _codes_csv(sessions)}),
                        media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="pasta-records.zip"'})

    return app


class _Denied(Exception):
    """No valid token (or, with the argument ``"admin"``, not the admin's)."""


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


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _signed_in(rater: str, token: str) -> Response:
    """Set the invite's cookies and go to the rater's start page (or the dashboard)."""
    response = RedirectResponse("/admin" if rater == "admin" else "/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
    response.set_cookie(WHO, rater, httponly=True, samesite="lax", max_age=30 * 86400)
    return response


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


def _error(status: int, title: str, problem: str, next_step: str = '<a href="/">Back to the start</a>') -> HTMLResponse:
    """An error page: what went wrong (escaped) and what to do next (markup of the app's own)."""
    return HTMLResponse(_page(title, f'<p class="error" id="error">{_e(problem)}</p><p id="next">{next_step}</p>'),
                        status_code=status)


def _invalid_invite() -> HTMLResponse:
    return _error(403, "Invalid invite", "This invite link is not valid (mistyped, or revoked).",
                  "Ask the study's organiser for a new one.")


def _session_error(exc: SessionError) -> HTMLResponse:
    text = str(exc)
    status = 404 if "no such session" in text else 410 if "expired" in text else 400
    title = {404: "Not found", 410: "Session expired"}.get(status, "Session finished" if "finished" in text
                                                           else "Not possible")
    return _error(status, title, text, '<a href="/">Start a new session</a>')


def _switch(current: str, rater: str, token: str) -> str:
    return _page("Switch rater?", f"""<p>This browser is signed in as <b>{_e(current)}</b>. The link you opened is
the invite of <b>{_e(rater)}</b>. If you switch, this browser rates as {_e(rater)}
from now on; {_e(current)}'s sessions stay as they are.</p>
<form method="post" action="/join/{_e(token)}"><button id="switch" type="submit">Switch to {_e(rater)}</button>
</form><p><a id="stay" href="/">Stay signed in as {_e(current)}</a></p>""")


def _home(rater: str, open_sessions: list, prompt: str, error: str | None = None) -> str:
    err = f'<p class="error" id="error">{_e(error)}</p>' if error else ""
    items = "".join(f'<li><a href="/s/{_e(sid)}">{_e(e.prompt)}</a> (turn {e.turns + 1} of {e.horizon})</li>'
                    for sid, e in open_sessions)
    mine = f"<h2>Your unfinished sessions</h2><ul>{items}</ul>" if items else ""
    return _page("pasta-t2i: personalised image generation", f"""
{err}<p>Signed in as {_e(rater)}. Describe an image; over a few turns the system proposes
variations, and you pick the column you like best.</p>
<form method="post" action="/sessions">
<label for="prompt">Your request</label><br>
<input id="prompt" name="prompt" maxlength="{MAX_PROMPT}" value="{_e(prompt)}" required>
<p><button id="start" type="submit">Start</button></p></form>{mine}""")


def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finished(prompt: str, code: str) -> str:
    return _page("Session finished", f'<p class="request">Your request: “{_e(prompt)}”</p>'
                 '<p id="finished">Thank you: every turn is recorded.</p>'
                 f'<p>Your completion code: <span class="code" id="code">{_e(code)}</span></p>'
                 "<p>Enter it where the study asks for it.</p>"
                 '<p><a id="again" href="/">Start another session</a></p>')


def _session(session: Session, error: str | None = None, note: str | None = None) -> str:
    H = session.env.config.horizon
    if session.done:
        return _page("Session finished", '<p id="finished">This session is finished.</p>'
                     '<p><a id="again" href="/">Back to the start</a></p>')
    head = f'<p class="request">Your request: “{_e(session.prompt)}”</p>'
    err = f'<p class="error" id="error">{_e(error)}</p>' if error else ""
    err += f'<p class="note" id="note">{_e(note)}</p>' if note else ""
    texts, pixels = session.texts(), session.pixels()
    if pixels is not None and (session.encoded is None or session.encoded[0] != session.turn):
        session.encoded = (session.turn, [[_png(p) for p in column] for column in pixels])
    things = "images" if pixels is not None else "prompts"
    columns = []
    for j, text in enumerate(texts):
        if session.encoded is not None and pixels is not None:
            shown = '<div class="images">' + "".join(
                f'<img alt="image {m + 1} of column {j + 1}" src="{uri}">'
                for m, uri in enumerate(session.encoded[1][j])) + "</div>"
            label = "made from the prompt"
        else:
            shown, label = "", f"prompt {j + 1}"
        columns.append(f'<div class="column" id="column-{j}">{shown}<span class="kind">{label}</span>'
                       f'<div class="card">{_e(text)}</div>'
                       f'<button type="submit" name="column" value="{j}" id="choose-{j}">Choose this one</button>'
                       "</div>")
    question = ""
    if session.turn >= 1 and session.previous is not None:
        last_text, last_pixels = session.previous
        last_images = ('<div class="images">' + "".join(f'<img alt="your last choice, image {m + 1}" '
                                                        f'src="{_png(p)}">' for m, p in enumerate(last_pixels))
                       + "</div>") if last_pixels is not None else ""
        radios = "".join(f'<label><input type="radio" name="answer" value="{a}" id="answer-{a.lower()}" required> '
                         f"{a}</label> " for a in ANSWERS)
        question = (f'<div class="ask"><div class="last" id="last"><span class="kind">your last choice</span>'
                    f'{last_images}<div class="lastcard">{_e(last_text)}</div></div>'
                    f'<fieldset class="answer"><legend>Compared with your last choice, the {things} below are:'
                    f"</legend>{radios}</fieldset></div>")
    if pixels is not None:
        intro = f"pick the column of {things} you like best."
    else:
        intro = ("each card is a prompt an image would be drawn from; pick the one closest to the image you "
                 "want.")
    body = f"""{head}{err}<p>Turn {session.turn + 1} of {H}: {intro}</p>
<form method="post" action="/s/{_e(session.id)}/choose"><input type="hidden" name="turn" value="{_e(session.token)}">
{question}<div class="slate" style="--cols:{len(texts)}">{''.join(columns)}</div></form>"""
    return _page("pasta-t2i", body)


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _when(t: float | None) -> str:
    return "" if not t else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _codes_csv(sessions: Sessions) -> str:
    """``session,rater,agent,code`` of every finished session (the codes raters were shown)."""
    rows = ["session,rater,agent,completion_code"]
    rows += [f"{sid},{e.rater},{e.agent},{sessions.code(sid)}" for sid, e in list(sessions.index.items())
             if e.finished]
    return "\n".join(rows) + "\n"


def _dashboard(folder: DataFolder, sessions: Sessions) -> str:
    """The organiser's page: invites, progress per rater and agent, the live answers table, the export."""
    from pasta_app import report as human

    t = time.time()
    entries = list(sessions.index.items())
    state = {sid: "finished" if e.finished else "expired" if sessions.expired(e, t) else "open" for sid, e in entries}
    per_agent = {a: {"sessions": 0, "finished": 0, "open": 0, "turns": 0} for a in sessions.agents}
    per_rater: dict[str, dict[str, Any]] = {r: {"sessions": 0, "finished": 0, "turns": 0, "last": None, "codes": []}
                                            for r in folder.raters()}
    for sid, e in entries:
        a = per_agent.setdefault(e.agent, {"sessions": 0, "finished": 0, "open": 0, "turns": 0})
        r = per_rater.setdefault(e.rater, {"sessions": 0, "finished": 0, "turns": 0, "last": None, "codes": []})
        a["sessions"] += 1
        r["sessions"] += 1
        a["turns"] += e.turns
        r["turns"] += e.turns
        r["last"] = max(r["last"] or 0.0, e.last)
        if state[sid] == "finished":
            a["finished"] += 1
            r["finished"] += 1
            r["codes"].append(sessions.code(sid))
        elif state[sid] == "open":
            a["open"] += 1
    active = folder.raters()
    try:
        rep: dict[str, Any] | None = human.report(folder.root)
    except (FileNotFoundError, ValueError):
        rep = None
    if rep is None:
        answers = "<p>No answers yet (raters answer from turn 2 on).</p>"
    else:
        rows = "".join(f"<tr><td>{_e(n)}</td><td>{rep['agents'][n]['all_turns']['n']}</td>"
                       + "".join(f"<td>{_e(human.pct(rep['agents'][n]['all_turns'], a))}</td>" for a in ANSWERS)
                       + f"<td>{rep['agents'][n]['raters']}</td></tr>" for n in rep["ranking"])
        pairs = "".join(f"<tr><td>{_e(p['a'])} − {_e(p['b'])}</td><td>{p['raters']}</td>"
                        f"<td>{_e(human.difference(p))}</td></tr>" for p in rep["paired_better"])
        answers = (f'<div class="wide"><table id="answers"><tr><th>agent</th><th>answers</th><th>Better</th>'
                   f"<th>Same</th><th>Worse</th><th>raters</th></tr>{rows}</table></div>"
                   "<p>Percentages with 95% Wilson intervals, turns 2 on.</p>"
                   + (f'<div class="wide"><table id="paired"><tr><th>paired difference of Better</th>'
                      f"<th>raters who met both</th><th>difference (95% t interval over raters)</th></tr>{pairs}"
                      "</table></div>" if pairs else ""))
    agent_rows = "".join(f"<tr><td>{_e(n)}</td><td>{a['sessions']}</td><td>{a['finished']}</td><td>{a['open']}</td>"
                         f"<td>{a['turns']}</td></tr>" for n, a in per_agent.items())
    rater_rows = ""
    for name, r in per_rater.items():
        status = "active" if active.get(name) else "revoked"
        action = (f'<form method="post" action="/admin/revoke"><input type="hidden" name="rater" value="{_e(name)}">'
                  f'<button type="submit" id="revoke-{_e(name)}">Revoke</button></form>') if active.get(name) else ""
        rater_rows += (f"<tr><td>{_e(name)}</td><td>{status}</td><td>{r['sessions']}</td><td>{r['finished']}</td>"
                       f"<td>{r['turns']}</td><td>{_e(_when(r['last']))}</td>"
                       f"<td>{_e(', '.join(r['codes'][-3:]))}{' …' if len(r['codes']) > 3 else ''}</td>"
                       f"<td>{action}</td></tr>")
    counts = {k: sum(v == k for v in state.values()) for k in ("open", "finished", "expired")}
    return _page("pasta-t2i: the study", f"""
<p id="summary">{_n(sum(active.values()), "rater")} invited ({len(active) - sum(active.values())} revoked);
{_n(len(entries), "session")} ({counts['open']} open, {counts['finished']} finished, {counts['expired']} expired),
{_n(sum(e.turns for _, e in entries), "turn")} recorded. Agents: {_e(', '.join(sessions.agents))}.</p>
<p><a id="export" href="/admin/export">Download the records (zip, with the completion codes)</a></p>
<h2>Answers so far</h2>{answers}
<h2>Progress per agent</h2><div class="wide"><table id="agents"><tr><th>agent</th><th>sessions</th><th>finished</th>
<th>open</th><th>turns</th></tr>{agent_rows}</table></div>
<h2>Raters</h2>
<form method="post" action="/admin/invites"><label for="count">New invites</label>
<input id="count" name="count" type="number" min="1" max="{MAX_INVITES}" value="5">
<button id="invite" type="submit">Make invite links</button></form>
<div class="wide"><table id="raters"><tr><th>rater</th><th>invite</th><th>sessions</th><th>finished</th>
<th>turns</th><th>last active</th><th>completion codes</th><th></th></tr>{rater_rows}</table></div>""")


def serve(data: str, agents: list[str], world: str = "synthetic", world_options: dict | None = None,
          host: str = "127.0.0.1", port: int = 8000, prompts: list[str] | None = None, horizon: int = 5,
          rate: float = 20.0, seed: int | None = None, limits: dict[str, Any] | None = None) -> None:
    """Run the app with uvicorn until stopped (prints the admin's link; raters are invited by ``invite``).

    ``limits`` holds :class:`~pasta_app.sessions.Sessions`' caps (``max_open``, ``max_per_rater``,
    ``expire_hours``, ``idle_minutes``).
    """
    import uvicorn

    t0 = time.perf_counter()
    folder = DataFolder.open(data)
    sessions = Sessions(folder, agents, world, world_options, horizon, seed, **(limits or {}))
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    print(f"admin: {base}/join/{folder.admin_token()}", flush=True)
    if not folder.raters():
        print(f"no raters invited yet: pasta serve invite --data {data} --raters N (or from the admin page)",
              flush=True)
    n_open = sum(not e.finished and not sessions.expired(e) for e in sessions.index.values())
    print(f"serving {n_open} unfinished sessions of {len(sessions.index)} from {data} on {base} "
          f"(read in {time.perf_counter() - t0:.2f} s; Ctrl-C stops)", flush=True)
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


def invite(data: str, raters: int, url: str = "http://127.0.0.1:8000", out: str | None = None) -> dict[str, str]:
    """Make ``raters`` invites in ``data`` and print their links (and the admin's); write them as CSV to ``out``."""
    folder = DataFolder.open(data)
    base = url.rstrip("/")
    links = {rater: f"{base}/join/{token}" for rater, token in folder.add_raters(raters).items()}
    print(f"admin: {base}/join/{folder.admin_token()}", flush=True)
    for rater, link in links.items():
        print(f"{rater}: {link}", flush=True)
    if out:
        from simulators.atomic import atomic_path

        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write("rater,link\n" + "".join(f"{r},{link}\n" for r, link in links.items()))
        print(f"wrote {len(links)} links to {out} (only their hashes are kept: keep this file safe)", flush=True)
    return links
