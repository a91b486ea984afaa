"""What looks like a secret: by the name it is stored under, or by the shape of the value.

Used to keep literal secrets out of everything lokki-sam generates (function environments,
sample events): a name such as `DB_PASS` or a value such as `postgres://user:pw@host/db` must be
passed as a reference, or at run time, never written into a file.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlsplit

_NAME_PATTERN = (
    r"(?i)(secret|passw(or)?d|(^|_)pass(_|$)|(^|_)pwd(_|$)|token|api_?key|private_?key|access_?key|signing_?key"
    r"|session_?key|credential|(^|_)auth(_|$)|webhook|(^|_)dsn(_|$)|conn(ection)?_?str)"
)
_VALUE_PATTERN = (
    r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"  # a URL with a password: postgres://user:pw@host
    r"|hooks\.slack\.com/services/"  # Slack incoming webhooks
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{8,}|\bsk-(live-|proj-)?[A-Za-z0-9_-]{16,}"  # Stripe, OpenAI-style
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub tokens
    r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."  # JWTs
)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)  # on first use: the Lambda runtime imports this module, never calls it


def name_looks_secret(name: str) -> bool:
    return bool(_compiled(_NAME_PATTERN).search(name))


def value_looks_secret(value: Any) -> bool:
    """A string (or a string inside a list/tuple/dict) shaped like a credential."""
    if isinstance(value, str):
        return bool(_compiled(_VALUE_PATTERN).search(value))
    if isinstance(value, list | tuple | set | frozenset):
        return any(value_looks_secret(v) for v in value)
    if isinstance(value, dict):
        return any(value_looks_secret(v) for v in value.values())
    return False


# A URL in a requirement line; userinfo in it is a credential unless it is only `${VAR}` references,
# which pip expands from the environment when it reads a requirements file.
_URL_PATTERN = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s;]+"
_ENV_ONLY_PATTERN = r"(\$\{[A-Z0-9_]+\}|:)*"
_SSH_SCHEMES = ("ssh", "git+ssh")  # `git+ssh://git@host/...`: a user name, the key does the rest


def url_credentials(line: str) -> str | None:
    """What credential a line's URL carries (a password, a token as user name), or None."""
    for url in _compiled(_URL_PATTERN).findall(line):
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        if not userinfo or _compiled(_ENV_ONLY_PATTERN).fullmatch(userinfo):
            continue
        if parts.password is None and parts.scheme.lower() in _SSH_SCHEMES:
            continue
        return "a password" if parts.password is not None else "a user name (often a token)"
    without_references = re.sub(r"\$\{[A-Z0-9_]+\}", "", line)
    return "a credential" if value_looks_secret(without_references) else None
