"""Named built-in detectors for personal data and secrets, for `redaction: detectors: [...]`.

Each detector finds the spans of text to mask in a string. A detector is a compiled regular
expression for candidates, an optional check that a candidate really is what it looks like
(a Luhn checksum for card numbers, mod-97 for IBANs, the area/group/serial rules for US
social security numbers, a decodable header for JWTs, `ipaddress` for IPv6), and a
*trigger*: substrings of which at least one must occur for the detector to be worth
running at all. Triggers are plain `in` tests, so a batch without an `@` never runs the
e-mail expression.

Detectors are written to mask what they find and leave look-alikes alone: order numbers
and build ids that fail the checksum, versions like `1.2.3`, dates, times and MAC
addresses, `BEGIN CERTIFICATE` blocks, the word "bearer" in prose.

Boundaries treat a newline like the edge of the string, because the processor scans the
text of a whole batch joined with newlines before it looks at single values.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Span = tuple[int, int]

_FOLD_DIGITS = str.maketrans("123456789", "000000000")


def fold(text: str) -> str:
    """`text` with every ASCII digit written as "0" (same length, so spans carry over)."""
    return text.translate(_FOLD_DIGITS)


@dataclass(frozen=True)
class Detector:
    """One named detector: candidates by `pattern`, confirmed by `check`, masked by group."""

    name: str
    pattern: re.Pattern[str]
    #: At least one of these must occur in a text for a match to be possible (empty: always).
    triggers: tuple[str, ...] = ()
    #: Confirms a candidate match; None accepts every candidate.
    check: Callable[[re.Match[str]], bool] | None = None
    #: The group masked (0 = the whole match), e.g. only the token after "Bearer ".
    group: int = 0
    #: Finds spans itself instead of `pattern` (for detectors anchored on a character).
    finder: Callable[[str], Iterator[Span]] | None = None
    #: Necessary conditions on the *folded* text (every digit written as "0", see `fold`),
    #: each starting with a literal so that the regex engine can skip ahead quickly. Used
    #: to select the values worth checking; the exact `pattern` then decides.
    hints: tuple[re.Pattern[str], ...] = ()

    def triggered(self, text: str) -> bool:
        if not self.triggers:
            return True
        return any(t in text for t in self.triggers)

    def candidate_spans(self, text: str, folded: str) -> Iterator[Span]:
        """Spans that may hold a finding: a superset of `spans(text)`, cheaper to find."""
        if not self.hints:
            yield from self.spans(text)
            return
        if not self.triggered(text):
            return
        for hint in self.hints:
            for m in hint.finditer(folded):
                yield m.span()

    def spans(self, text: str) -> Iterator[Span]:
        """Spans of `text` this detector masks, left to right, not overlapping."""
        if not self.triggered(text):
            return
        if self.finder is not None:
            yield from self.finder(text)
            return
        check = self.check
        for m in self.pattern.finditer(text):
            if check is None or check(m):
                yield m.span(self.group)


# -- checks ------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits (card numbers, IMEIs)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(m: re.Match[str]) -> bool:
    digits = m.group(0).replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    # Issuer prefixes of the card networks (Visa 4, Mastercard 51-55 and 2221-2720, Amex and
    # Diners 3, Discover and UnionPay 6, Maestro 5/6): a checksum alone passes one random
    # number in ten, so an order number starting with 1 or 9 is never a card.
    first = digits[0]
    if first == "2":
        if not 2221 <= int(digits[:4]) <= 2720:
            return False
    elif first not in "3456":
        return False
    return luhn_ok(digits)


#: IBAN length by country (ISO 13616 registry), for the countries most seen in telemetry.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23,
    "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "KW": 30, "KZ": 20,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "QA": 29, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
    "UA": 29,
}


def iban_ok(text: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of an IBAN (spaces allowed)."""
    iban = text.replace(" ", "").upper()
    want = IBAN_LENGTHS.get(iban[:2])
    if want is None or len(iban) != want or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def _ipv6_ok(m: re.Match[str]) -> bool:
    text = m.group(0)
    if text.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    # "d::" or "a::b" in identifiers are valid addresses nobody writes; ask for two groups
    # of hex digits unless the address is the IPv4-mapped or loopback form.
    groups = [g for g in re.split(r"[:.]", text) if g]
    return len(groups) >= 2 or text == "::1"


def _b64url_json(part: str) -> object:
    padded = part + "=" * (-len(part) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _jwt_ok(m: re.Match[str]) -> bool:
    header = _b64url_json(m.group(1))
    return isinstance(header, dict) and ("alg" in header or "typ" in header)


def _token_ok(m: re.Match[str]) -> bool:
    token = m.group(1)
    if len(token) >= 24:
        return True
    return len(token) >= 16 and (
        any(c.isdigit() for c in token) or any(c in "._~+/-=" for c in token)
        or (token.lower() != token and token.upper() != token)
    )


# -- the detectors -----------------------------------------------------------------------

# Left and right edges: not inside a longer run of the same kind of characters.
_NOT_WORD_BEFORE = r"(?<![\w.+-])"

_AT = re.compile(r"@|%40")
_LOCAL_PART = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63})*\.([A-Za-z]{2,24})(?![\w-])")
_SCALE_SUFFIX = re.compile(r"\d+(?:\.\d+)?x\.")


def _emails(text: str) -> Iterator[Span]:
    # Anchored on each "@" (or "%40", an URL-encoded one, as in query strings): a pattern
    # that starts with the local part would try every letter of the text.
    for at in _AT.finditer(text):
        before = _LOCAL_PART.search(text, max(0, at.start() - 64), at.start())
        if before is None:
            continue
        domain = _DOMAIN.match(text, at.end())
        if domain is None or _SCALE_SUFFIX.match(domain.group(0)):
            continue  # "icon@2x.png" is an image, not an address
        yield before.start(), domain.end()


EMAIL = Detector("email", _AT, triggers=("@", "%40"), finder=_emails)

CREDIT_CARD = Detector(
    "credit_card",
    # The edge checks come after the first digit so that the engine can skip to digits.
    re.compile(r"\d(?<![\w-]\d)(?:[ -]?\d){12,18}(?![\w-])"),
    check=_card_ok,
    hints=(re.compile(r"0(?:[ -]?0){12}"),),
)

IBAN = Detector(
    "iban",
    re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"),
    check=lambda m: iban_ok(m.group(0)),
    hints=(re.compile(r"00(?<=[A-Z]{2}00)"),),
)

US_SSN = Detector(
    "us_ssn",
    re.compile(r"(\d{3})(?<![\w-]\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])"),
    check=lambda m: ssn_ok(m.group(1), m.group(3), m.group(4)),
    hints=(re.compile(r"000[- ]00[- ]0000"),),
)

PHONE = Detector(
    "phone",
    re.compile(
        # International (+country and 8-15 digits with separators) or North American formats.
        r"(?<![\w+.-])(?:\+[1-9][\d ().-]{6,22}\d"
        r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"
        r"|\d{3}([.-])\d{3}\1\d{4})(?![\w-]|\.\d)"
    ),
    check=lambda m: 8 <= sum(c.isdigit() for c in m.group(0)) <= 15,
    hints=(re.compile(r"\+0"), re.compile(r"\(000\)"), re.compile(r"000[.-]000[.-]0000")),
)

def _ipv4_ok(m: re.Match[str]) -> bool:
    text, start, end = m.string, m.start(), m.end()
    if start and (text[start - 1].isalnum() or text[start - 1] in "._"):
        return False
    if end < len(text):
        after = text[end]
        if after.isalnum() or after == "_" or (after == "." and text[end + 1 : end + 2].isdigit()):
            return False
    return all(len(octet) == 1 or (octet[0] != "0" and int(octet) <= 255) for octet in m.group(0).split("."))


IPV4 = Detector(
    "ipv4",
    # Candidates start with a digit (fast to find); octet ranges and edges are checked after.
    re.compile(r"\d{1,3}(?:\.\d{1,3}){3}"),
    triggers=(".",),
    check=_ipv4_ok,
    hints=(re.compile(r"\.0{1,3}\.0{1,3}\."),),
)

IPV6 = Detector(
    "ipv6",
    re.compile(
        r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4}|:)?"
        r"(?![\w:])"
    ),
    triggers=(":",),
    check=_ipv6_ok,
)

JWT = Detector(
    "jwt",
    re.compile(r"(?<![\w-])(eyJ[A-Za-z0-9_-]{8,})\.(eyJ[A-Za-z0-9_-]{4,})\.([A-Za-z0-9_-]*)(?![\w-])"),
    triggers=("eyJ",),
    check=_jwt_ok,
)

BEARER_TOKEN = Detector(
    "bearer_token",
    re.compile(r"(?<![\w])[Bb](?:earer|EARER)[ \t]+([A-Za-z0-9._~+/-]+=*)"),
    triggers=("earer", "EARER"),
    check=_token_ok,
    group=1,
)

AWS_ACCESS_KEY = Detector(
    "aws_access_key",
    re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
    triggers=("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ABIA", "ACCA"),
)

PRIVATE_KEY_BLOCK = Detector(
    "private_key_block",
    # A block cut short (a truncated log line) is masked to the end of the text.
    re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
        re.DOTALL,
    ),
    triggers=("PRIVATE KEY",),
)

#: Every built-in detector by its name in YAML.
DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        EMAIL, CREDIT_CARD, IBAN, US_SSN, PHONE, IPV4, IPV6, JWT, BEARER_TOKEN,
        AWS_ACCESS_KEY, PRIVATE_KEY_BLOCK,
    )
}


def find_all(detectors: tuple[Detector, ...], text: str) -> list[Span]:
    """Spans to mask in `text` by any of `detectors`, merged where they overlap."""
    found: list[Span] = []
    for d in detectors:
        found.extend(d.spans(text))
    if len(found) < 2:
        return found
    found.sort()
    merged = [found[0]]
    for start, end in found[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged
