"""A labelled corpus for the redaction detectors: positives that must never leak, look-alikes
that should pass unchanged.

`POSITIVES` are (detector, secret, text): `text` holds `secret` in context, and after
redaction with every detector on, `secret` must not appear anywhere in the output (in an
attribute, a log body string, a map body, or the query string of an URL). `NEGATIVES` are
(look-alike of, text): strings that resemble personal data but are not; each one changed by
the processor counts as a false positive. Card numbers are the networks' published test
numbers; IBANs are the registry's example accounts; SSNs follow the SSA's rules but are
well-known examples; keys and tokens are the vendors' documentation examples or made up.
"""

from __future__ import annotations

_PRIVATE_RSA = "MIIEpAIBAAKCAQEA7bq98bTGxPwGmNjSyDLgPWfGpW5t"
_PRIVATE_PKCS8 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC"
_PRIVATE_OPENSSH = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
_PRIVATE_EC = "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5BaAaW4"

_JWT_1 = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
_JWT_2 = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjoxOTAwMDAwMDAwfQ"
    ".c2lnbmF0dXJlLXJzYQ"
)
_JWT_3 = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJlbWFpbCI6IngiLCJpYXQiOjF9.MEUCIQDx"
_JWT_4 = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ."


def _in_contexts(detector: str, secret: str, templates: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return [(detector, secret, t.format(secret)) for t in templates]


_PLAIN = ("{}",)
_SENTENCE = ("user provided {} during checkout", "value={};retry=1")

POSITIVES: list[tuple[str, str, str]] = [
    # e-mail
    *_in_contexts("email", "alice.smith@example.com", (*_PLAIN, *_SENTENCE, "To: Alice <{}>")),
    *_in_contexts("email", "bob+ml-alerts@mail.example.org", (*_PLAIN, "notify {}, then stop")),
    *_in_contexts("email", "j_doe@sub.domain.co.uk", (*_PLAIN, "login failed for {}")),
    *_in_contexts("email", "ALICE@EXAMPLE.COM", _PLAIN),
    *_in_contexts("email", "first.last@company.io", ("mailto:{}", "{}: quota exceeded")),
    *_in_contexts("email", "carol%40example.net", ("/api/users?email={}&page=2",)),
    *_in_contexts("email", "dan.o'neil@example.com".replace("'", ""), ("owner={}",)),
    # credit cards (Luhn-valid test numbers of the networks)
    *_in_contexts("credit_card", "4111111111111111", (*_PLAIN, *_SENTENCE)),
    *_in_contexts("credit_card", "4111 1111 1111 1111", (*_PLAIN, "card: {} exp 12/27")),
    *_in_contexts("credit_card", "5555-5555-5555-4444", _PLAIN),
    *_in_contexts("credit_card", "5105105105105100", ("pan={}",)),
    *_in_contexts("credit_card", "378282246310005", _PLAIN),
    *_in_contexts("credit_card", "3782 822463 10005", ("amex {}",)),
    *_in_contexts("credit_card", "6011111111111117", ("discover {} declined",)),
    *_in_contexts("credit_card", "3530111333300000", _PLAIN),
    *_in_contexts("credit_card", "30569309025904", _PLAIN),
    *_in_contexts("credit_card", "2223003122003222", ("mc2 {}",)),
    *_in_contexts("credit_card", "4222222222222", ("visa13 {}",)),
    *_in_contexts("credit_card", "4012888888881881", ("charge card {} for 9.99",)),
    *_in_contexts("credit_card", "6200000000000005", ("unionpay={}",)),
    # IBANs (registry examples; mod-97 valid)
    *_in_contexts("iban", "GB82WEST12345698765432", (*_PLAIN, "pay to {} today")),
    *_in_contexts("iban", "GB82 WEST 1234 5698 7654 32", ("iban: {}",)),
    *_in_contexts("iban", "DE89370400440532013000", (*_PLAIN, "refund {}")),
    *_in_contexts("iban", "DE89 3704 0044 0532 0130 00", _PLAIN),
    *_in_contexts("iban", "FR1420041010050500013M02606", _PLAIN),
    *_in_contexts("iban", "NL91ABNA0417164300", ("account={}",)),
    *_in_contexts("iban", "ES9121000418450200051332", _PLAIN),
    *_in_contexts("iban", "IT60X0542811101000000123456", _PLAIN),
    *_in_contexts("iban", "CH9300762011623852957", _PLAIN),
    *_in_contexts("iban", "BE68539007547034", _PLAIN),
    *_in_contexts("iban", "PL61109010140000071219812874", _PLAIN),
    *_in_contexts("iban", "SE4550000000058398257466", _PLAIN),
    # US social security numbers
    *_in_contexts("us_ssn", "078-05-1120", (*_PLAIN, *_SENTENCE)),
    *_in_contexts("us_ssn", "123-45-6789", ("ssn={}",)),
    *_in_contexts("us_ssn", "219-09-9999", ("SSN {} on file",)),
    *_in_contexts("us_ssn", "457-55-5462", _PLAIN),
    *_in_contexts("us_ssn", "536 22 1234", ("ssn: {}",)),
    # phone numbers
    *_in_contexts("phone", "+1 (555) 123-4567", (*_PLAIN, "call {} after 5pm")),
    *_in_contexts("phone", "+44 20 7946 0958", _PLAIN),
    *_in_contexts("phone", "+49 30 901820", ("tel {}",)),
    *_in_contexts("phone", "(555) 987-6543", ("phone={}",)),
    *_in_contexts("phone", "555-123-4567", (*_PLAIN, "sms to {} failed")),
    *_in_contexts("phone", "415.555.0132", _PLAIN),
    *_in_contexts("phone", "+33 1 42 68 53 00", _PLAIN),
    *_in_contexts("phone", "+14155550132", ("whatsapp:{}",)),
    *_in_contexts("phone", "+91 98765 43210", _PLAIN),
    *_in_contexts("phone", "+61 2 9374 4000", ("contact {}",)),
    # IPv4
    *_in_contexts("ipv4", "203.0.113.42", (*_PLAIN, *_SENTENCE)),
    *_in_contexts("ipv4", "10.0.0.1", ("peer {} closed",)),
    *_in_contexts("ipv4", "192.168.1.254", ("X-Forwarded-For: {}, 10.1.2.3",)),
    *_in_contexts("ipv4", "8.8.8.8", _PLAIN),
    *_in_contexts("ipv4", "172.16.254.1", ("client={}:443",)),
    *_in_contexts("ipv4", "198.51.100.7", ("from {}.",)),
    # IPv6
    *_in_contexts("ipv6", "2001:db8::8a2e:370:7334", (*_PLAIN, "client [{}]:8443")),
    *_in_contexts("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", _PLAIN),
    *_in_contexts("ipv6", "fe80::1ff:fe23:4567:890a", ("link-local {} up",)),
    *_in_contexts("ipv6", "::ffff:192.0.2.128", ("mapped={}",)),
    *_in_contexts("ipv6", "2606:4700:4700::1111", _PLAIN),
    # JWTs
    *_in_contexts("jwt", _JWT_1, (*_PLAIN, "token={}")),
    *_in_contexts("jwt", _JWT_2, ("id_token: {}",)),
    *_in_contexts("jwt", _JWT_3, _PLAIN),
    *_in_contexts("jwt", _JWT_4, ("session {} expired",)),
    # bearer tokens
    *_in_contexts("bearer_token", "abc123DEF456ghi789jkl", ("Authorization: Bearer {}", "bearer {}")),
    *_in_contexts("bearer_token", "ya29.a0AfH6SMBx3kPq", ("Bearer {}",)),
    *_in_contexts("bearer_token", "2YotnFZFEjr1zCsicMWpAA", ("Authorization: Bearer {}",)),
    *_in_contexts("bearer_token", "sl.BCdEfGhIjKlMnOpQrStUvWxYz0123456789", ("BEARER {}",)),
    # AWS access key ids
    *_in_contexts("aws_access_key", "AKIAIOSFODNN7EXAMPLE", (*_PLAIN, "aws_access_key_id={}")),
    *_in_contexts("aws_access_key", "ASIAY34FZKBOKMUTVV7A", ("creds {} expired",)),
    *_in_contexts("aws_access_key", "AKIAJ2QMRGPBJ4OLFE4Q", _PLAIN),
    # private keys
    *_in_contexts(
        "private_key_block", _PRIVATE_RSA,
        ("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
         "key loaded: -----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY----- ok"),
    ),
    *_in_contexts("private_key_block", _PRIVATE_PKCS8, ("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",)),
    *_in_contexts(
        "private_key_block", _PRIVATE_OPENSSH,
        ("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",),
    ),
    *_in_contexts("private_key_block", _PRIVATE_EC, ("-----BEGIN EC PRIVATE KEY-----\n{}",)),
]

NEGATIVES: list[tuple[str, str]] = [
    # e-mail look-alikes
    ("email", "@alice"),
    ("email", "mention @bob in the channel"),
    ("email", "icon@2x.png"),
    ("email", "logo@3x.webp"),
    ("email", "user@localhost"),
    ("email", "pkg@1.2.3"),
    ("email", "npm install lodash@4.17.21"),
    ("email", "docker pull python@sha256:abcd"),
    ("email", "name at example dot com"),
    ("email", "a@b"),
    ("email", "@@@"),
    ("email", "root@"),
    # card look-alikes
    ("credit_card", "4111111111111112"),
    ("credit_card", "4111 1111 1111 1112"),
    ("credit_card", "5555555555554445"),
    ("credit_card", "1234567890123456"),
    ("credit_card", "order 1234-5678-9012-3456"),
    ("credit_card", "ISBN 9780306406157"),
    ("credit_card", "ts=1700000000123"),
    ("credit_card", "12345678901234567890"),
    ("credit_card", "0000 0000 0000 0000"),
    ("credit_card", "4444444444444444"),
    ("credit_card", "tracking 9400111899223197428490"),
    ("credit_card", "epoch_ns 1732671834000000000"),
    ("credit_card", "invoice INV-2024-000123456"),
    ("credit_card", "4111-1111"),
    # IBAN look-alikes
    ("iban", "GB82WEST12345698765433"),
    ("iban", "DE89370400440532013001"),
    ("iban", "US12345678901234567890"),
    ("iban", "ISO8601"),
    ("iban", "AB12CDEF"),
    ("iban", "SKU GB12ABCD"),
    ("iban", "GB82 WEST 1234"),
    ("iban", "region EU12 zone"),
    # SSN look-alikes
    ("us_ssn", "000-12-3456"),
    ("us_ssn", "666-12-3456"),
    ("us_ssn", "900-12-3456"),
    ("us_ssn", "123-00-4567"),
    ("us_ssn", "123-45-0000"),
    ("us_ssn", "2024-01-15"),
    ("us_ssn", "12-345-6789"),
    ("us_ssn", "1234-56-7890"),
    ("us_ssn", "part 123-45-67890"),
    ("us_ssn", "ticket ABC-123-45-6789X"),
    # phone look-alikes
    ("phone", "10:30:45"),
    ("phone", "v1.2.3"),
    ("phone", "+5 points"),
    ("phone", "+1.5%"),
    ("phone", "555-1234"),
    ("phone", "HTTP 404"),
    ("phone", "build 20231115.3"),
    ("phone", "port 8080"),
    ("phone", "123.456.78"),
    ("phone", "(800)"),
    ("phone", "2024-11-27"),
    ("phone", "score +0.25"),
    ("phone", "range 100-200-300"),
    ("phone", "temp (21) degrees"),
    # IPv4 look-alikes
    ("ipv4", "1.2.3"),
    ("ipv4", "version 1.2.3.4.5"),
    ("ipv4", "999.1.1.1"),
    ("ipv4", "10.0.0.256"),
    ("ipv4", "v2.10.1"),
    ("ipv4", "pi 3.14159"),
    ("ipv4", "192.168.1"),
    ("ipv4", "release 2024.11.3.1"),
    ("ipv4", "v1.2.3.4"),
    ("ipv4", "torch==2.1.0.post1"),
    ("ipv4", "oid 1.3.6.1.4.1.311"),
    ("ipv4", "01.02.03.04"),
    # IPv6 look-alikes
    ("ipv6", "12:30:45"),
    ("ipv6", "00:1A:2B:3C:4D:5E"),
    ("ipv6", "std::vector<int>"),
    ("ipv6", "resnet:predict"),
    ("ipv6", "a:b:c"),
    ("ipv6", "localhost:8080"),
    ("ipv6", "2024-01-15T10:30:45Z"),
    ("ipv6", "ns::Class::method"),
    ("ipv6", "ratio 16:9:4"),
    ("ipv6", "label app:web:v2"),
    ("ipv6", "deadbeef:cafe"),
    ("ipv6", "::"),
    # JWT look-alikes
    ("jwt", "eyJub3QiOiJqd3QifQ"),
    ("jwt", "eyJhbGciOi.truncated"),
    ("jwt", "header.payload.signature"),
    ("jwt", "a.b.c"),
    ("jwt", "eyJzb21lIjoiZGF0YSJ9.eyJ4IjoxfQ.sig"),
    ("jwt", "eyJnotbase64!!.eyJx.y"),
    # bearer look-alikes
    ("bearer_token", "the bearer of bad news"),
    ("bearer_token", "Bearer authentication is described in RFC 6750"),
    ("bearer_token", "bearer token"),
    ('bearer_token', 'WWW-Authenticate: Bearer realm="example"'),
    ("bearer_token", "Bearer"),
    ("bearer_token", "auth scheme: bearer"),
    ("bearer_token", "Bearer internationalization"),
    ("bearer_token", "standard-bearer"),
    # AWS look-alikes
    ("aws_access_key", "AKIA"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPL"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLEX"),
    ("aws_access_key", "akiaiosfodnn7example"),
    ("aws_access_key", "AKIA1234567890123456"),
    ("aws_access_key", "BKIAIOSFODNN7EXAMPLE"),
    # private key look-alikes
    ("private_key_block", "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----"),
    ("private_key_block", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ\n-----END PUBLIC KEY-----"),
    ("private_key_block", "private key rotated on schedule"),
    ("private_key_block", "-----BEGIN PGP SIGNATURE-----"),
    ("private_key_block", "load PRIVATE KEY from vault"),
    # everyday ML-service telemetry
    ("none", "POST /v1/models/resnet:predict"),
    ("none", "resnet50"),
    ("none", "model-server-7f9c"),
    ("none", "2024-11-27T01:43:54Z"),
    ("none", "2024-11-27T01:43:54.123456789+00:00"),
    ("none", "req-3fa2b9c01d"),
    ("none", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
    ("none", "span 00f067aa0ba902b7"),
    ("none", "latency 12.5ms p99 48.1ms"),
    ("none", "gpu-a100-80gb"),
    ("none", "k8s.pod.uid=7f3d1c2e-9a4b-4c1d-8e2f-0a1b2c3d4e5f"),
    ("none", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("none", "python-requests/2.31.0"),
    ("none", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    ("none", "batch_size=32 max_tokens=2048 temperature=0.7"),
    ("none", "inference done in 35 ms"),
    ("none", "ml.model.version 2024.11.3"),
    ("none", "feature vector dim 768"),
    ("none", "CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("none", "prediction=0.9731 label=cat"),
    ("none", "tokens: 1024/4096"),
    ("none", "region us-east-1 zone us-east-1a"),
    ("none", "image ghcr.io/acme/model-server:1.4.2"),
    ("none", "node ip-10-0-3-17.ec2.internal"),
    ("none", "queue depth 128, workers 16"),
    ("none", "accuracy 0.95, f1 0.91, auc 0.97"),
    ("none", "epoch 12/50 loss=0.0231"),
    ("none", "GET /healthz 200"),
    ("none", "deployment resnet-v3-canary"),
    ("none", "pid 31337 exited with code 0"),
    ("none", "duration_ms=1532"),
    ("none", "http.status_code 503"),
    ("none", "RetryInfo delay 1.5s"),
    ("none", "checksum crc32c=0x1c291ca3"),
    ("none", "uuid 550e8400-e29b-41d4-a716-446655440000"),
    ("none", "build 7f3a9c1 on 2024-11-26"),
    ("none", "ONNX opset 17"),
    ("none", "scale 0.5x-2.0x"),
    ("none", "cpu 1.5 cores mem 2Gi"),
    ("none", "warmup 3/3 done"),
    ("none", "shard 3 of 12"),
    ("none", "retrying in 250ms (attempt 2/5)"),
    ("none", "cache hit ratio 98.2%"),
    ("none", "learning_rate=3e-4"),
    ("none", "kafka partition 7 offset 123456789"),
    ("none", "lineno 1200 in predict.py"),
    # Known hard cases: the detectors cannot tell these from the real thing by their shape.
    ("email", "git clone git@github.com:acme/model.git"),
    ("ipv4", "SNMP OID 1.3.6.1"),
    ("phone", "nightly build +20231115"),
    ("ipv6", "hex pair be:ef::"),
]

assert len(POSITIVES) + len(NEGATIVES) >= 200, (len(POSITIVES), len(NEGATIVES))
