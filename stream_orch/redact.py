"""Credentials out of anything that is logged or printed: every URL in a text loses its
``user:password@`` part and the values of token-like query parameters (``***`` instead).

A leaf module (no stream_orch imports), so every layer can use it on the URLs and bootstrap
strings it reports; the rest of the URL stays, since the host and path are what a reader needs.
"""

from __future__ import annotations

import re

REDACTED = "***"

# scheme://userinfo@ : the userinfo runs to the last @ before the path, query or fragment (so an
# unescaped @ inside a password does not leave its tail behind).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][\w+.-]*://)(?P<userinfo>[^/?#\s]*)@")
# ?name=value or &name=value whose name says it holds a secret (token, access_token, api_key,
# X-Amz-Signature, sig, password, ...).
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;][^=&#\s]*?(?:token|key|secret|passw|pwd|sig|auth|credential|session)[^=&#\s]*=)"
    r"(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_urls(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_PARAM.sub(rf"\g<name>{REDACTED}", text)
