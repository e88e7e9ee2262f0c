"""Who may use a dashboard, and proof that a state-changing request came from its own pages.

- With a token or basic auth configured, every request but the static files and the login
  form needs ``Authorization: Bearer TOKEN``, basic credentials, or the session cookie set
  by the login form (or by ``?token=TOKEN`` on any page).
- With neither, the dashboard answers only loopback clients that name it by a loopback
  host (which also defeats DNS rebinding), unless the host application says otherwise.
- A state-changing request is a POST carrying the CSRF token of the double-submit cookie
  (form field or ``X-CSRF-Token`` header), unless it authenticated with a bearer token,
  which a browser never sends by itself. The token is signed (HMAC) with a key derived from
  the configured secret or credentials (else made per process), so a cookie planted by another
  site or subdomain is refused; and a browser's request from another site is refused by
  its ``Sec-Fetch-Site``, or by its ``Origin`` where that header is missing.
- A request body is at most :data:`~conveyor.defaults.API_MAX_BODY_BYTES` (413 beyond).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor import defaults
from conveyor.serving import is_loopback

SESSION_COOKIE = "conveyor_dashboard"
CSRF_COOKIE = "conveyor_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: The scope key recording how a request authenticated: bearer, basic, cookie or local.
AUTH_SCOPE_KEY = "conveyor.auth"

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


@dataclass(frozen=True)
class AuthSettings:
    """The credentials a dashboard accepts."""

    token: str | None = None
    basic_auth: tuple[str, str] | None = None
    #: Answer non-loopback clients without credentials (the host app guards the dashboard).
    allow_remote: bool = False
    #: A secret to sign CSRF tokens with (share it between processes serving one dashboard).
    csrf_secret: str | None = field(default=None, repr=False)
    #: The key CSRF tokens are signed with when no secret or credentials are configured.
    process_secret: bytes = field(
        default_factory=lambda: secrets.token_bytes(32), repr=False, compare=False
    )

    @property
    def required(self) -> bool:
        return bool(self.token) or self.basic_auth is not None

    def session_value(self) -> str:
        """The session cookie's value: derived from the token, never the token itself."""
        assert self.token
        key = self.token.encode()
        return hmac.new(key, b"conveyor-dashboard-session", hashlib.sha256).hexdigest()

    def csrf_key(self) -> bytes:
        """The key CSRF tokens are signed with: derived from the configured secret, else from
        the credentials (every process serving the dashboard agrees), else random per process.
        """
        if self.csrf_secret:
            secret = self.csrf_secret.encode()
        elif self.token:
            secret = self.token.encode()
        elif self.basic_auth is not None:
            secret = ":".join(self.basic_auth).encode()
        else:
            return self.process_secret
        return hmac.new(secret, b"conveyor-dashboard-csrf", hashlib.sha256).digest()

    def sign_csrf(self, nonce: str) -> str:
        """A CSRF token: a random nonce and its signature."""
        mac = hmac.new(self.csrf_key(), nonce.encode(), hashlib.sha256).hexdigest()
        return f"{nonce}.{mac}"

    def valid_csrf(self, token: str) -> bool:
        """Whether ``token`` was made by :meth:`sign_csrf` with this dashboard's key."""
        nonce, _, _ = token.partition(".")
        return len(nonce) >= 32 and same_secret(token, self.sign_csrf(nonce))


def same_secret(given: str, expected: str) -> bool:
    """Compare secrets in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticate(settings: AuthSettings, request: Request) -> str | None:
    """How the request proves who it is (``bearer``, ``basic``, ``cookie``), or ``None``."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if settings.token and scheme.lower() == "bearer" and same_secret(credentials, settings.token):
        return "bearer"
    if settings.basic_auth and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected_user, expected_password = settings.basic_auth
        if same_secret(user, expected_user) & same_secret(password, expected_password):
            return "basic"
    cookie = request.cookies.get(SESSION_COOKIE)
    if settings.token and cookie and same_secret(cookie, settings.session_value()):
        return "cookie"
    return None


def is_local(request: Request) -> bool:
    """A loopback client that addressed a loopback host name."""
    client = request.client
    if client is not None and not is_loopback(client.host):
        return False
    host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    return is_loopback(host)


def cookie_path(scope: Scope) -> str:
    """Cookies are scoped to the dashboard's own mount path."""
    root: str = scope.get("root_path", "")
    return root or "/"


def set_session(response: Response, settings: AuthSettings, request: Request) -> None:
    """Log the browser in: the HttpOnly session cookie."""
    response.set_cookie(SESSION_COOKIE, settings.session_value(), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        path=cookie_path(request.scope))  # fmt: skip


def csrf_token(settings: AuthSettings, request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (and must be set as a cookie)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and settings.valid_csrf(existing):
        return existing, False
    return settings.sign_csrf(secrets.token_urlsafe(32)), True


def set_csrf(response: Response, token: str, request: Request) -> None:
    """Set the CSRF cookie that forms and scripts echo back."""
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https",
                        path=cookie_path(request.scope))  # fmt: skip


def local_path(path: str) -> str:
    """``path`` as a path on this site: leading slashes collapsed, so that a redirect to it
    cannot leave the site (``//evil.example/`` is another host to a browser)."""
    return "/" + path.lstrip("/\\")


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (if it has one) names the host it was sent to."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request: those carry an Origin
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def check_post(request: Request, settings: AuthSettings, *, read_only: bool) -> None:
    """Refuse (403) a state-changing request in read-only mode, or without a CSRF proof."""
    if read_only:
        raise HTTPException(403, "this dashboard is read-only")
    if request.scope.get(AUTH_SCOPE_KEY) == "bearer":
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"refusing a {site} request")
    if site is None and not same_origin(request):
        raise HTTPException(403, "refusing a request from another origin")
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    cookie = request.cookies.get(CSRF_COOKIE)
    if (not submitted or not cookie or not same_secret(submitted, cookie)
            or not settings.valid_csrf(cookie)):  # fmt: skip
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def route_path(scope: Scope) -> str:
    """The request path inside the dashboard (without the mount prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class Guard:
    """ASGI middleware: security headers on every response, and the access rules above."""

    def __init__(
        self, app: ASGIApp, settings: AuthSettings, login_page: Callable[[Request], Response]
    ) -> None:
        self.app = app
        self.settings = settings
        self.login_page = login_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        refusal = self._too_large(scope) or self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, capped(receive, defaults.API_MAX_BODY_BYTES), send_with_headers)

    @staticmethod
    def _too_large(scope: Scope) -> Response | None:
        """A 413 reply when the declared body is larger than allowed (or not a number)."""
        length = Headers(scope=scope).get("content-length")
        if length is None or (length.isdigit() and int(length) <= defaults.API_MAX_BODY_BYTES):
            return None
        return too_large_response(scope)

    def _refusal(self, scope: Scope) -> Response | None:
        """``None`` to let the request through (noting how it authenticated), else a reply."""
        request = Request(scope)
        path = route_path(scope)
        if path.startswith("/static/"):
            return None
        settings = self.settings
        if not settings.required:
            if settings.allow_remote or is_local(request):
                scope[AUTH_SCOPE_KEY] = "local"
                return None
            return Response(
                "This dashboard has no token or basic auth configured, so it answers only "
                "loopback clients at a loopback address (127.0.0.1, localhost).\n",
                status_code=403, media_type="text/plain",
            )  # fmt: skip
        if path == "/login":
            return None
        given = request.query_params.get("token")
        if given is not None and request.method in ("GET", "HEAD"):
            return self._token_login(request, given)
        method = authenticate(settings, request)
        if method is None:
            return self._unauthorized(request, path)
        scope[AUTH_SCOPE_KEY] = method
        return None

    def _token_login(self, request: Request, given: str) -> Response:
        """``?token=`` on a page: set the session cookie and drop the token from the URL."""
        if not self.settings.token or not same_secret(given, self.settings.token):
            return self._unauthorized(request, route_path(request.scope))
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = local_path(request.url.path) + ("?" + urlencode(query) if query else "")
        response = RedirectResponse(target, status_code=303)
        set_session(response, self.settings, request)
        return response

    def _unauthorized(self, request: Request, path: str) -> Response:
        headers: dict[str, Any] = {}
        if self.settings.basic_auth is not None:
            headers["www-authenticate"] = 'Basic realm="Conveyor dashboard", charset="UTF-8"'
        elif self.settings.token:
            headers["www-authenticate"] = 'Bearer realm="Conveyor dashboard"'
        if path == "/api" or path.startswith("/api/"):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers=headers)
        response = self.login_page(request)
        response.status_code = 401
        response.headers.update(headers)
        return response


def too_large_message() -> str:
    return f"the request body is larger than {defaults.API_MAX_BODY_BYTES} bytes"


def too_large_response(scope: Scope) -> Response:
    """The 413 reply, as JSON under ``/api``, else as text."""
    path = route_path(scope)
    if path == "/api" or path.startswith("/api/"):
        return JSONResponse({"error": too_large_message()}, status_code=413)
    return Response(too_large_message() + "\n", status_code=413, media_type="text/plain")


def capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises a 413 once more than ``limit`` bytes of body arrived (for a
    body sent without a ``Content-Length``)."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, too_large_message())
        return message

    return receive_capped
