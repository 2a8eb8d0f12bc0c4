"""The account a command talks to: ``--api-key``/``--api-secret``/``--api-url`` or the
``SAILTHRU_API_*`` variables, checked before any call so a mistake is a configuration error
(exit 2) naming the setting, not a run of failures "that may succeed if retried"."""

from __future__ import annotations

import argparse
import os
import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..options import DEFAULT_API_URL, AppOptions
from ..transport.calllog import CallLog, CallRecord
from ._common import UsageError

__all__ = ["add_credentials", "app_options", "require_authentication"]

_PROBE_TIMEOUT = 5.0
_DEFAULT_TIMEOUT = AppOptions.read_timeout


def add_credentials(parser: argparse.ArgumentParser) -> None:
    """Add the credential flags to a subcommand's parser."""
    group = parser.add_argument_group("credentials (flags win over the environment)")
    group.add_argument("--api-key", help="API key (default: $SAILTHRU_API_KEY)")
    group.add_argument("--api-secret", help="API secret (default: $SAILTHRU_API_SECRET)")
    group.add_argument(
        "--api-url", help=f"API base URL (default: $SAILTHRU_API_URL or {DEFAULT_API_URL})"
    )
    group.add_argument(
        "--api-timeout", metavar="SECONDS",
        help=f"seconds to wait for Sailthru's answer to a call (default: $SAILTHRU_API_TIMEOUT "
             f"or {_DEFAULT_TIMEOUT:g}); a credentials check that gets no answer in that time "
             "is a configuration error",
    )


@dataclass(frozen=True)
class _Setting:
    value: str | None
    source: str  # the flag or variable it came from, for messages


def _setting(args: argparse.Namespace, attribute: str, flag: str, variable: str) -> _Setting:
    value = getattr(args, attribute, None)
    if value is not None:
        return _Setting(value, flag)
    return _Setting(os.environ.get(variable), variable)


def app_options(args: argparse.Namespace, *, probe: bool = True) -> AppOptions:
    """The account from flags or environment; raises :class:`UsageError` naming a bad setting.

    With ``probe``, also checks that something listens at the API URL (a refused connection
    or a host name that does not exist is a configuration error), without an API call.
    """
    key = _setting(args, "api_key", "--api-key", "SAILTHRU_API_KEY")
    secret = _setting(args, "api_secret", "--api-secret", "SAILTHRU_API_SECRET")
    url = _setting(args, "api_url", "--api-url", "SAILTHRU_API_URL")
    missing = [name for name, s in (("API key", key), ("API secret", secret)) if not s.value]
    if missing:
        raise UsageError(
            f"missing {' and '.join(missing)}: pass --api-key/--api-secret or set "
            "SAILTHRU_API_KEY and SAILTHRU_API_SECRET"
        )
    for setting in (key, secret, url):
        if setting.value is not None and setting.value != setting.value.strip():
            # A pasted newline or space: the value is never shown (it may be the secret).
            raise UsageError(f"{setting.source} has whitespace at its start or end: remove it")
    timeout = _timeout(args)
    try:
        app = AppOptions(str(key.value), str(secret.value), url.value or DEFAULT_API_URL,
                         read_timeout=timeout)
    except ValueError as exc:
        raise UsageError(f"{url.source}: {exc}" if "api_url" in str(exc) else str(exc)) from None
    if probe:
        problem = _unreachable(app.api_url)
        if problem:
            raise UsageError(f"{url.source if url.value else 'the API URL'} {app.api_url}: "
                             f"{problem}; check the URL")
    return app


def _timeout(args: argparse.Namespace) -> float:
    """``--api-timeout`` or ``SAILTHRU_API_TIMEOUT`` in seconds (a positive number)."""
    setting = _setting(args, "api_timeout", "--api-timeout", "SAILTHRU_API_TIMEOUT")
    if setting.value is None or not setting.value.strip():
        return _DEFAULT_TIMEOUT
    try:
        seconds = float(setting.value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{setting.source} must be a positive number of seconds, got "
                         f"{setting.value!r}")
    return seconds


def _unreachable(url: str) -> str | None:
    """Why nothing can answer at ``url`` for sure (refused, no such host), or None.

    A TCP connect only: no HTTP request, so no API call is spent. A timeout or any other
    failure that may pass is left to the calls' own retries. Behind a proxy the target cannot
    be tried directly, so it is not.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _proxied(parts.scheme, host):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT):
            return None
    except ConnectionRefusedError:
        return f"connection refused on port {port}: nothing listens there"
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_HOST:
            return f"the host name {host!r} does not exist"
        return None
    except OSError:
        return None


_NO_SUCH_HOST = {
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
}


def _proxied(scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


def require_authentication(args: argparse.Namespace, app: AppOptions) -> list[CallRecord]:
    """One cheap signed call before any work: a refused key or secret, or a host that does not
    answer within the API timeout, is a configuration error (:class:`UsageError`, exit 2)
    naming the flag or variable it came from, not a run of thousands of failed records (or,
    on an unchanged model, a run that says "Synced").

    Returns the records of the call (and its retry), for the run's call log and counts.
    """
    from ..errors import TransientError
    from ..transport.api import RetryPolicy, SailthruApi
    from ..transport.auth import check_authentication, refused_credential

    calls = CallLog()
    api = SailthruApi(app, concurrency=1, retry=RetryPolicy(max_attempts=2, max_total=15.0),
                      call_log=calls)
    try:
        refused = check_authentication(api)
    except TransientError:  # connected, but no reply at all: a wrong host or port
        url = _setting(args, "api_url", "--api-url", "SAILTHRU_API_URL")
        where = url.source if url.value else "the API URL (--api-url/SAILTHRU_API_URL)"
        raise UsageError(f"{where} {app.api_url}: no answer within {app.read_timeout:g} s "
                         "(a connection was accepted, nothing replied): check the URL, or "
                         "give a slow server more time with --api-timeout/SAILTHRU_API_TIMEOUT"
                         ) from None
    finally:
        api.close()
    if refused is None:
        return calls.records()
    which = refused_credential(refused)
    key = _setting(args, "api_key", "--api-key", "SAILTHRU_API_KEY").source
    secret = _setting(args, "api_secret", "--api-secret", "SAILTHRU_API_SECRET").source
    if which == "key":
        raise UsageError(f"Sailthru does not know this API key: check {key} "
                         f"(key {app.masked_key})")
    if which == "secret":
        raise UsageError(f"the API secret does not match the API key (Sailthru refused the "
                         f"signature): check {secret}")
    if which == "ip":
        raise UsageError("Sailthru does not allow calls from this machine's IP address for "
                         "this API key: allow it in Sailthru's API settings")
    raise UsageError(f"Sailthru refused the credentials: check {key} and {secret}")
