"""RFC 3164 messages → log records with the Collector's fields, as real senders write them."""

from __future__ import annotations

import calendar
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.receivers.syslog.timestamps import Stamp
from agent.testing import attrs_dict
from tests.unit.receivers.syslog.kit import config_of, records

# 2024-06-15 12:00:00 UTC: the "now" of most tests.
JUNE = float(calendar.timegm((2024, 6, 15, 12, 0, 0)))


def rec(frame: bytes, clock: float = JUNE, **options: object) -> tuple[object, dict[str, object]]:
    config = config_of(protocol="rfc3164", **options)
    [lr] = records([frame], config, clock=clock)
    return lr, attrs_dict(lr.attributes)


def utc(*parts: int) -> int:
    return calendar.timegm(parts) * 10**9


def test_the_rfc_example() -> None:
    lr, a = rec(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert lr.time_unix_nano == utc(2024, 10, 11, 22, 14, 15)  # type: ignore[attr-defined]  # the closest year
    assert lr.severity_number == 18 and lr.severity_text == "crit"  # type: ignore[attr-defined]
    assert a == {"priority": 34, "facility": 4, "facility_text": "auth", "hostname": "mymachine",
                 "appname": "su", "message": "'su root' failed for lonvick on /dev/pts/8"}


def test_space_padded_and_unpadded_days_and_fractions() -> None:
    assert rec(b"<13>Jun  5 01:02:03 h t: m")[0].time_unix_nano == utc(2024, 6, 5, 1, 2, 3)  # type: ignore[attr-defined]
    assert rec(b"<13>Jun 5 01:02:03 h t: m")[0].time_unix_nano == utc(2024, 6, 5, 1, 2, 3)  # type: ignore[attr-defined]
    assert rec(b"<13>Jun 15 01:02:03.250 h t: m")[0].time_unix_nano == utc(2024, 6, 15, 1, 2, 3) + 250_000_000  # type: ignore[attr-defined]


def test_a_december_message_read_in_january_is_dated_last_year() -> None:
    january = float(calendar.timegm((2025, 1, 1, 0, 5, 0)))
    lr, _ = rec(b"<13>Dec 31 23:59:58 h t: late", clock=january)
    assert lr.time_unix_nano == utc(2024, 12, 31, 23, 59, 58)  # type: ignore[attr-defined]
    # ... and a January message read on New Year's Eve (sender clock ahead) next year.
    december = float(calendar.timegm((2024, 12, 31, 23, 59, 0)))
    lr, _ = rec(b"<13>Jan  1 00:00:30 h t: early", clock=december)
    assert lr.time_unix_nano == utc(2025, 1, 1, 0, 0, 30)  # type: ignore[attr-defined]


def test_year_inference_skips_a_february_29_that_does_not_exist() -> None:
    lr, _ = rec(b"<13>Feb 29 10:00:00 h t: leap", clock=float(calendar.timegm((2025, 3, 1, 0, 0, 0))))
    assert lr.time_unix_nano == utc(2024, 2, 29, 10, 0, 0)  # type: ignore[attr-defined]


def test_location_sets_the_time_zone() -> None:
    lr, _ = rec(b"<13>Jun 15 08:00:00 h t: m", location="America/New_York")
    expected = datetime(2024, 6, 15, 8, 0, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert lr.time_unix_nano == int(expected) * 10**9  # type: ignore[attr-defined]
    assert lr.time_unix_nano == utc(2024, 6, 15, 12, 0, 0)  # type: ignore[attr-defined]


def test_tag_with_pid_is_split() -> None:
    _, a = rec(b"<30>Jun 15 11:59:00 web-1 postfix/smtpd[1234]: connect from unknown")
    assert a["appname"] == "postfix/smtpd" and a["proc_id"] == "1234"
    assert a["hostname"] == "web-1" and a["message"] == "connect from unknown"


def test_no_hostname() -> None:
    _, a = rec(b"<30>Jun 15 11:59:00 sshd[99]: Accepted publickey")
    assert "hostname" not in a
    assert a["appname"] == "sshd" and a["proc_id"] == "99" and a["message"] == "Accepted publickey"


def test_no_tag() -> None:
    _, a = rec(b"<30>Jun 15 11:59:00 router-7 link up on port 3")
    assert a["hostname"] == "router-7" and a["message"] == "link up on port 3" and "appname" not in a


def test_an_ipv6_hostname_is_not_a_tag() -> None:
    _, a = rec(b"<30>Jun 15 11:59:00 fe80::1 kernel: eth0 up")
    assert a["hostname"] == "fe80::1" and a["appname"] == "kernel" and a["message"] == "eth0 up"


@pytest.mark.parametrize(
    ("stamp", "nanos"),
    [
        (b"2024-06-15T11:59:00.123456+00:00", utc(2024, 6, 15, 11, 59, 0) + 123_456_000),
        (b"2024-06-15T13:59:00+02:00", utc(2024, 6, 15, 11, 59, 0)),
        (b"2024-06-15T11:59:00Z", utc(2024, 6, 15, 11, 59, 0)),
        (b"2024-06-15T11:59:00", utc(2024, 6, 15, 11, 59, 0)),  # no offset: `location` (UTC)
    ],
)
def test_iso_timestamps(stamp: bytes, nanos: int) -> None:
    lr, a = rec(b"<13>" + stamp + b" node-2 app[7]: iso message")
    assert lr.time_unix_nano == nanos  # type: ignore[attr-defined]
    assert a["hostname"] == "node-2" and a["appname"] == "app" and a["message"] == "iso message"


def test_python_syslog_handler_messages_have_no_timestamp() -> None:
    lr, a = rec(b"<14>plain python message")
    assert lr.time_unix_nano == 0  # type: ignore[attr-defined]
    assert a == {"priority": 14, "facility": 1, "facility_text": "user", "message": "plain python message"}
    _, a = rec(b"<11>myservice: with an ident")
    assert a["appname"] == "myservice" and a["message"] == "with an ident" and "hostname" not in a


def test_missing_pri_needs_allow_skip_pri_header() -> None:
    frame = b"Jun 15 11:59:00 1.2.3.4 apache_server: test message"
    lr, a = rec(frame, allow_skip_pri_header=True)
    assert lr.severity_number == 0 and lr.severity_text == ""  # type: ignore[attr-defined]
    assert a == {"hostname": "1.2.3.4", "appname": "apache_server", "message": "test message"}
    lr, a = rec(frame)
    assert a == {} and lr.body.string_value == frame.decode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("frame", [b"<13>Feb 30 10:00:00 h t: m", b"<13>Jun 15 25:00:00 h t: m",
                                   b"<13>2024-13-01T00:00:00Z h t: m", b"<1234>Jun 15 11:59:00 h t: m",
                                   b"<200>Jun 15 11:59:00 h t: m", b"no pri at all"])
def test_invalid_dates_and_pri_do_not_parse(frame: bytes) -> None:
    lr, a = rec(frame)
    assert a == {} and lr.body.string_value == frame.decode()  # type: ignore[attr-defined]


def test_the_stamp_cache_follows_the_clock() -> None:
    now = [JUNE]
    stamp = Stamp(ZoneInfo("UTC"), clock=lambda: now[0])
    assert stamp.nanos(b"Jan", b" 1", b"00:00:00") == utc(2024, 1, 1, 0, 0, 0)
    now[0] = float(calendar.timegm((2024, 12, 31, 23, 0, 0)))
    assert stamp.nanos(b"Jan", b" 1", b"00:00:00") == utc(2025, 1, 1, 0, 0, 0)
