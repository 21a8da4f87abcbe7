#!/usr/bin/python3
"""Standard Webhooks signature verifier (https://www.standardwebhooks.com) for the tests.

Written from the specification, independently of pg_sync's own signer, so that a passing test
shows pg_sync interoperates with any conforming receiver rather than agreeing with itself.

    verify(secret, headers, body, now=None, tolerance=300)   raises VerificationError(reason)

`python3 webhook_verify.py --self-test` checks it against the specification's published example
and a set of negative cases.
"""

import base64
import binascii
import hashlib
import hmac
import re
import sys
import time

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds, as in the specification's reference libraries


class VerificationError(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _header(headers, name):
    # Header names are case-insensitive; accept a dict or an http.client.HTTPMessage.
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _secret_key(secret):
    if secret.startswith(SECRET_PREFIX):
        secret = secret[len(SECRET_PREFIX):]
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("secret is not valid base64") from None


def sign(key, msg_id, timestamp, body):
    """The v1 signature (base64, without the "v1," prefix) of one message under a decoded key."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret, headers, body, now=None, tolerance=DEFAULT_TOLERANCE):
    """Raises VerificationError unless `body` carries a valid, fresh v1 signature."""
    if isinstance(body, str):
        body = body.encode()
    key = _secret_key(secret)
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", timestamp),
                        ("webhook-signature", signature)):
        if not value:
            raise VerificationError(f"missing header {name}")

    # Strict: integer seconds only, so that a sender emitting e.g. milliseconds or a fraction
    # is caught here rather than by a lenient int() parse.
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise VerificationError(f"webhook-timestamp is not integer seconds: {timestamp!r}")
    ts = int(timestamp)
    now = int(time.time() if now is None else now)
    if ts < now - tolerance:
        raise VerificationError(f"timestamp too old ({now - ts} s)")
    if ts > now + tolerance:
        raise VerificationError(f"timestamp too new ({ts - now} s in the future)")

    expected = sign(key, msg_id, timestamp, body).encode()
    # Space-delimited "version,signature" entries (several during key rotation); only v1 is
    # symmetric HMAC, other versions (e.g. v1a) are ignored.
    candidates = [entry.split(",", 1)[1] for entry in signature.split()
                  if entry.startswith("v1,")]
    if not candidates:
        raise VerificationError("no v1 signature in webhook-signature")
    for candidate in candidates:
        if hmac.compare_digest(expected, candidate.encode("utf-8", "replace")):
            return None
    raise VerificationError("no matching signature")


def _self_test():
    # The example published in the specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    ts = 1614265330
    body = b'{"test": 2432232314}'
    good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def hdrs(sig=good, **over):
        h = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
        h.update(over)
        return {k: v for k, v in h.items() if v is not None}

    other = "whsec_" + base64.b64encode(b"another key, 32 bytes long......").decode()
    accept = [
        ("spec example", secret, hdrs(), body, ts),
        ("secret without prefix", secret[len(SECRET_PREFIX):], hdrs(), body, ts),
        ("header names in any case",
         secret, {"Webhook-Id": msg_id, "WEBHOOK-TIMESTAMP": str(ts), "Webhook-Signature": good},
         body, ts),
        ("rotation: second signature matches", secret, hdrs("v1,Zm9vYmFy " + good), body, ts),
        ("v1a entries ignored", secret, hdrs("v1a,Zm9vYmFy " + good), body, ts),
        ("just inside tolerance", secret, hdrs(), body, ts + 300),
        ("str body", secret, hdrs(), body.decode(), ts),
    ]
    reject = [
        ("tampered body", secret, hdrs(), b'{"test": 2432232315}', ts, "no matching signature"),
        ("wrong secret", other, hdrs(), body, ts, "no matching signature"),
        ("other message id", secret, hdrs(**{"webhook-id": "msg_other"}), body, ts,
         "no matching signature"),
        ("old timestamp", secret, hdrs(), body, ts + 301, "timestamp too old"),
        ("future timestamp", secret, hdrs(), body, ts - 301, "timestamp too new"),
        ("missing webhook-signature", secret, hdrs(None), body, ts, "missing header"),
        ("missing webhook-id", secret, hdrs(**{"webhook-id": None}), body, ts, "missing header"),
        ("missing webhook-timestamp", secret, hdrs(**{"webhook-timestamp": None}), body, ts,
         "missing header"),
        ("fractional timestamp", secret, hdrs(**{"webhook-timestamp": f"{ts}.5"}), body, ts,
         "not integer seconds"),
        ("no v1 entry", secret, hdrs("v1a,Zm9vYmFy"), body, ts, "no v1 signature"),
        ("signature without version", secret, hdrs(good[3:]), body, ts, "no v1 signature"),
        ("url-safe alphabet", secret, hdrs(good.replace("+", "-").replace("/", "_")), body, ts,
         "no matching signature"),
        ("secret not base64", "whsec_not*base64", hdrs(), body, ts, "not valid base64"),
    ]
    failures = 0
    for name, sec, h, b, now in accept:
        try:
            verify(sec, h, b, now=now)
        except VerificationError as e:
            failures += 1
            print(f"FAIL: {name}: rejected: {e.reason}", file=sys.stderr)
    for name, sec, h, b, now, reason in reject:
        try:
            verify(sec, h, b, now=now)
            failures += 1
            print(f"FAIL: {name}: accepted", file=sys.stderr)
        except VerificationError as e:
            if reason not in e.reason:
                failures += 1
                print(f"FAIL: {name}: reason [{e.reason}], expected [{reason}]", file=sys.stderr)
    if sign(_secret_key(secret), msg_id, ts, body) != good[3:]:
        failures += 1
        print("FAIL: sign() does not reproduce the spec example", file=sys.stderr)
    total = len(accept) + len(reject) + 1
    print(f"webhook_verify self-test: {total - failures}/{total} passed")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(_self_test())
    print("usage: webhook_verify.py --self-test", file=sys.stderr)
    sys.exit(2)
