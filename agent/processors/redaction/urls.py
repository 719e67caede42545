"""URL sanitization for `url_sanitizer`: stable, low-cardinality URLs without ids.

The query string and fragment are dropped (they carry ids, tokens and personal data far
more often than routing), and every path segment that looks like an identifier becomes `*`:
a segment holding a digit (`1234`, `a3f9c2e1`, a UUID, `user-42`) unless it is a version
(`v1`, `v2beta1`), or a long run of letters with no vowels or of mixed case (random ids).
Scheme, host and port stay, so `https://api.example.com/users/1234/orders?id=9` becomes
`https://api.example.com/users/*/orders`. Text without a `/` is returned unchanged.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"v\d+(?:[a-z]+\d*)?(?:\.\d+)*", re.IGNORECASE)
_HAS_DIGIT = re.compile(r"\d")
_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*|//[^/?#]*)")
_VOWELS = frozenset("aeiouyAEIOUY")


def _id_like(segment: str) -> bool:
    if not segment or segment == "*":
        return False
    # An HTTP route verb after a colon ("resnet:predict") keeps its verb.
    name = segment.split(":", 1)[0]
    if _HAS_DIGIT.search(name):
        return _VERSION.fullmatch(name) is None
    if len(name) >= 16:
        letters = [c for c in name if c.isalpha()]
        if letters and not any(c in _VOWELS for c in letters):
            return True
        lower = sum(c.islower() for c in letters)
        upper = sum(c.isupper() for c in letters)
        return lower > 2 and upper > 2
    return False


def sanitize_url(url: str) -> str:
    """`url` without query, fragment and id-like path segments (see the module docstring)."""
    if "/" not in url:
        return url
    cut = len(url)
    for sep in ("?", "#"):
        at = url.find(sep)
        if at != -1:
            cut = min(cut, at)
    head = ""
    m = _AUTHORITY.match(url)
    rest = url[:cut]
    if m is not None:
        head, rest = rest[: m.end()], rest[m.end() :]
    segments = rest.split("/")
    for i, segment in enumerate(segments):
        if _id_like(segment):
            verb = segment.partition(":")[2]
            segments[i] = "*:" + verb if verb else "*"
    return head + "/".join(segments)
