"""One Astro login as an object that runs in the background and can be watched.

A :class:`LoginFlow` runs the steps of ``astro login`` in order (auth config,
organization lookup, browser and loopback callback, token exchange, user info,
session check, saving) or the shorter token login. Views subscribe to its
:class:`LoginEvent` stream, show the authorize URL when it appears, and may
:meth:`~LoginFlow.cancel` it; :meth:`~LoginFlow.wait` returns the
:class:`LoginResult` or raises the error that ended it.

The flow never prints, opens a browser or prompts: those belong to the views.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import oauth_client
from .astro_api import SessionInfo, check_session, lookup_organization_ids
from .auth_config_cache import AuthConfigCache
from .callback_server import CallbackServer
from .config_store import ConfigStore, ContextRecord
from .emails import validate_email
from .errors import AstroJupyterError, InvalidInputError, LoginCancelledError, OAuthError
from .http_client import HttpClient
from .jwt_claims import expiry_of, read_claims
from .login_types import LoginEvent, LoginMode, LoginOptions, LoginResult, LoginStep
from .pkce import new_pkce_pair, new_state
from .redirect_paste import callback_query_from_address, check_pasted_outcome
from .settings import AstroLogin

__all__ = ["LoginEvent", "LoginFlow", "LoginMode", "LoginOptions", "LoginResult", "LoginStep"]

log = logging.getLogger(__name__)

# The Astro CLI treats a pasted token as valid for one hour when it cannot tell.
_TOKEN_LOGIN_DEFAULT_LIFETIME = timedelta(hours=1)


def _without_bearer_scheme(token: str) -> str:
    """Strip spaces and a ``Bearer `` prefix, which users copy from config.yaml with the token."""
    token = token.strip()
    scheme, _, rest = token.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else token


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass
class _Secrets:
    """Values that must live only as long as the login; kept out of every repr."""

    token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "_Secrets(<hidden>)"


class LoginFlow:
    """A single login, run in a background thread or in the caller's.

    Parameters
    ----------
    options
        Domain, API base URL and the callback and HTTP settings.
    store
        Where the result is saved, shared with the Astro CLI.
    mode
        Browser and link modes run the authorization code flow; token mode
        uses ``token`` instead.
    email
        The account to sign in as (a ``login_hint`` for the sign-in page).
        Required for browser and link modes, ignored for token mode.
    token
        An access token copied from the Astro UI, for token mode.
    paste_back
        Whether the view lets the user paste the redirect address with
        :meth:`deliver_redirect`. A busy callback port then does not end the
        login: it waits for the pasted address alone.
    auth_configs
        Where the auth config of each API base URL is kept between logins.
        Defaults to the one of the :class:`~astro_jupyter.settings.AstroLogin`
        instance, which lives as long as the kernel.
    """

    def __init__(
        self,
        options: LoginOptions,
        store: ConfigStore,
        *,
        mode: LoginMode,
        email: str | None = None,
        token: str | None = None,
        paste_back: bool = False,
        auth_configs: AuthConfigCache | None = None,
    ) -> None:
        self.options = options
        self.mode = mode
        self.paste_back = paste_back
        if auth_configs is None:
            auth_configs = AstroLogin.instance().auth_configs
        self._auth_configs = auth_configs
        self._store = store
        self._requested_email = validate_email(email or "") if mode is not LoginMode.TOKEN else None
        if mode is LoginMode.TOKEN:
            token = _without_bearer_scheme(token or "")
            read_claims(token)
        self._secrets = _Secrets(token=token)

        self._listeners: list[Callable[[LoginEvent], None]] = []
        self._events: list[LoginEvent] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._cancelled = threading.Event()
        self._cancel_reason = "Login cancelled."
        self._pasted_code_digests: set[bytes] = set()
        self._callback: CallbackServer | None = None
        self._callback_closer: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._result: LoginResult | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"LoginFlow(domain={self.options.domain!r}, mode={self.mode.value!r}, "
            f"step={self.step.value!r})"
        )

    # Watching

    @property
    def step(self) -> LoginStep:
        """The latest step reached."""
        with self._lock:
            return self._events[-1].step if self._events else LoginStep.STARTING

    @property
    def events(self) -> list[LoginEvent]:
        """Every event so far, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def authorize_url(self) -> str | None:
        """The sign-in page URL, once the flow is waiting for the browser."""
        for event in self.events:
            if event.authorize_url:
                return event.authorize_url
        return None

    @property
    def done(self) -> bool:
        """Whether the login has ended, in success, failure or cancellation."""
        return self._done.is_set()

    def subscribe(self, listener: Callable[[LoginEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every later event, from the flow's thread.

        Returns a function that unsubscribes. A listener that raises is logged
        and does not stop the login.
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, step: LoginStep, message: str, **extra: object) -> None:
        event = LoginEvent(step=step, message=message, **extra)  # type: ignore[arg-type]
        with self._lock:
            self._events.append(event)
            listeners = list(self._listeners)
        log.info("login to %s: %s", self.options.domain, step.value)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a login event listener failed")

    # Control

    def start(self) -> LoginFlow:
        """Run the login in a daemon thread and return at once."""
        if self._thread is not None:
            raise RuntimeError("this login has already been started")
        self._thread = threading.Thread(
            target=self._run_and_record, name=f"astro-login-{self.options.domain}", daemon=True
        )
        self._thread.start()
        return self

    def run(self) -> LoginResult:
        """Run the login in the calling thread and return its result."""
        if self._thread is not None:
            raise RuntimeError("this login has already been started")
        self._run_and_record()
        return self.wait(0)

    def cancel(self, reason: str = "Login cancelled.") -> None:
        """Stop the login and free the callback port; safe from any thread.

        ``reason`` becomes the message of the :class:`LoginCancelledError` that
        :meth:`wait` raises.
        """
        self._cancel_reason = reason
        self._cancelled.set()
        callback = self._callback
        if callback is not None:
            callback.cancel()

    def deliver_redirect(self, address: str) -> None:
        """Finish the browser step with a redirect address that the user pasted.

        This races the loopback callback: whichever arrives first is used. A
        pasted address with an OAuth ``error`` ends the login with that error,
        as the browser's redirect would.

        Raises
        ------
        InvalidInputError
            The login is not waiting for the browser, or the address is not
            this login's callback, has a missing, repeated or wrong ``state``,
            or has no usable code and no error. The login goes on waiting.
        """
        callback = self._callback
        if callback is None or self.step is not LoginStep.WAITING_FOR_BROWSER:
            raise InvalidInputError(
                "This login is not waiting for the browser, so the pasted address was not used."
            )
        query = callback_query_from_address(address, callback.redirect_uri)
        outcome = callback.judge(query)
        check_pasted_outcome(outcome)
        if outcome.code:
            # Only a digest is kept, to tell a pasted code from the browser's later.
            self._pasted_code_digests.add(_digest(outcome.code))
        callback.deliver(outcome)

    def wait(self, timeout: float | None = None) -> LoginResult:
        """Wait for the login to end and return its result.

        Raises
        ------
        TimeoutError
            The login is still running after ``timeout`` seconds.
        AstroJupyterError
            The error that ended the login, including
            :class:`~astro_jupyter.errors.LoginCancelledError`.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the login to {self.options.domain} is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - set whenever no error is
        return self._result

    # The steps

    def _run_and_record(self) -> None:
        final = (LoginStep.FAILED, "Login stopped unexpectedly.")
        try:
            with HttpClient(timeout_s=self.options.http_timeout_s) as http:
                self._result = self._run_steps(http)
            final = (LoginStep.DONE, f"Logged in to {self.options.domain}.")
        except LoginCancelledError as error:
            self._error = LoginCancelledError(self._cancel_reason, step=error.step)
            final = (LoginStep.CANCELLED, self._cancel_reason)
        except AstroJupyterError as error:
            self._error = error
            final = (LoginStep.FAILED, str(error))
        except Exception as error:
            # A bug: keep its traceback for the caller, but end the flow cleanly.
            log.exception("login to %s failed unexpectedly", self.options.domain)
            self._error = error
            final = (LoginStep.FAILED, f"Login failed unexpectedly: {type(error).__name__}.")
        finally:
            self._secrets.token = None
            if self._callback_closer is not None:
                self._callback_closer.join()
            # Done before the final event, so a listener that receives it can call wait(0).
            self._done.set()
            self._emit(*final)

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise LoginCancelledError(self._cancel_reason)

    def _run_steps(self, http: HttpClient) -> LoginResult:
        # Reading the config first means a broken file fails the login before
        # the user signs in, not after.
        stored = self._store.read_context(self.options.domain)
        self._check_cancelled()

        self._emit(LoginStep.AUTH_CONFIG, "Fetching the login settings.")
        config = self._auth_configs.get(
            self.options.api_base_url,
            lambda base_url: oauth_client.fetch_auth_config(http, base_url),
        )
        self._check_cancelled()

        if self.mode is LoginMode.TOKEN:
            tokens = self._token_from_paste()
        else:
            tokens = self._authorization_code_tokens(http, config)
        self._check_cancelled()

        self._emit(LoginStep.USER_INFO, "Fetching your account details.")
        user = oauth_client.fetch_userinfo(http, config, tokens.access_token)
        self._check_cancelled()

        self._emit(LoginStep.SESSION_CHECK, "Checking your organization and workspaces.")
        session = check_session(
            http,
            self.options.api_base_url,
            tokens.access_token,
            stored_organization=stored.organization if stored else None,
            last_used_workspace=stored.last_used_workspace if stored else None,
        )
        self._check_cancelled()

        self._emit(LoginStep.SAVING, f"Saving the login to {self._store.path}.")
        self._save(tokens, user.email, session, stored)
        return LoginResult(
            domain=self.options.domain,
            email=user.email,
            requested_email=self._requested_email,
            organization=session.organization,
            workspace=session.workspace,
            workspaces=session.workspaces,
            expires_at=tokens.expires_at,
            refreshable=tokens.refresh_token is not None,
        )

    def _token_from_paste(self) -> oauth_client.TokenSet:
        token = (self._secrets.token or "").strip()
        expires_at = expiry_of(read_claims(token))
        if expires_at is None:
            expires_at = datetime.now(timezone.utc) + _TOKEN_LOGIN_DEFAULT_LIFETIME
        return oauth_client.TokenSet(access_token=token, expires_at=expires_at)

    def _authorization_code_tokens(
        self, http: HttpClient, config: oauth_client.AuthConfig
    ) -> oauth_client.TokenSet:
        email = self._requested_email or ""
        self._emit(LoginStep.ORGANIZATION_LOOKUP, "Looking up your organization.")
        organization_ids = lookup_organization_ids(http, self.options.api_base_url, email)
        self._check_cancelled()

        pkce = new_pkce_pair()
        organization_id = organization_ids[0] if organization_ids else None
        code, redirect_uri = self._wait_for_code(config, email, pkce.challenge, organization_id)

        self._emit(LoginStep.TOKEN_EXCHANGE, "Exchanging the authorization code for tokens.")
        try:
            return oauth_client.exchange_code(
                http, config, code=code, code_verifier=pkce.verifier, redirect_uri=redirect_uri
            )
        except OAuthError as error:
            if not (oauth_client.is_invalid_grant(error) and self._was_pasted(code)):
                raise
            raise OAuthError(
                f"{error} The code came from a pasted address, which may have been cut short: "
                "log in again and copy the whole address.",
                step=error.step,
                status=error.status,
                oauth_error=error.oauth_error,
            ) from None

    def _was_pasted(self, code: str) -> bool:
        return _digest(code) in self._pasted_code_digests

    def _wait_for_code(
        self,
        config: oauth_client.AuthConfig,
        email: str,
        code_challenge: str,
        organization_id: str | None,
    ) -> tuple[str, str]:
        """Wait for the browser's authorization code on the loopback callback.

        Publishes the authorize URL, then returns the code and the redirect URI
        it was issued for. The callback server is closed on every way out, in a
        thread that ``_run_and_record`` joins.
        """
        state = new_state()
        callback = CallbackServer(state, port=self.options.callback_port).start(
            allow_busy_port=self.paste_back
        )
        self._callback = callback
        try:
            # A cancel that arrived before the server existed must still count.
            if self._cancelled.is_set():
                callback.cancel()
            url = oauth_client.authorization_url(
                config,
                redirect_uri=callback.redirect_uri,
                code_challenge=code_challenge,
                state=state,
                email=email,
                organization_id=organization_id,
            )
            timeout_s = self.options.callback_timeout_s
            if callback.listening:
                message = (
                    f"Waiting for the browser to come back to {callback.redirect_uri} "
                    f"(times out in {timeout_s:g} s)."
                )
            else:
                message = (
                    f"Port {callback.port} is in use by another program (another notebook's "
                    "login or `astro login` in a terminal), so the browser cannot come back to "
                    "this kernel; after signing in, paste the address the browser ends on "
                    f"(times out in {timeout_s:g} s)."
                )
            self._emit(
                LoginStep.WAITING_FOR_BROWSER,
                message,
                authorize_url=url,
                deadline_monotonic=time.monotonic() + timeout_s,
                callback_listening=callback.listening,
                redirect_uri=callback.redirect_uri,
            )
            return callback.wait(timeout_s), callback.redirect_uri
        finally:
            self._callback = None
            # close() waits up to one poll of the serving loop. Closing beside the
            # token exchange keeps that wait out of the login's time, and
            # _run_and_record joins the thread, so the port is free before the
            # login ends.
            self._callback_closer = threading.Thread(
                target=callback.close, name="astro-login-callback-close", daemon=True
            )
            self._callback_closer.start()

    def _save(
        self,
        tokens: oauth_client.TokenSet,
        email: str,
        session: SessionInfo,
        stored: ContextRecord | None,
    ) -> None:
        last_used = session.workspace.id if session.workspace else None
        if last_used is None and stored is not None:
            last_used = stored.last_used_workspace
        record = ContextRecord(
            domain=self.options.domain,
            token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            user_email=email,
            organization=session.organization.id,
            organization_product=session.organization.product,
            workspace=session.workspace.id if session.workspace else None,
            last_used_workspace=last_used,
        )
        self._store.save_login(record, make_current=True)
