# HMAC-SHA256 signing of records with the device's own key.
#
# HMAC is written out over hashlib.sha256 because not every MicroPython port
# ships the `hmac` module; the tests check it against CPython's hmac.
import binascii
import hashlib

from protocols.canonical import dumps

try:  # CPython and most MicroPython builds: the C implementations
    import hmac as _stdlib_hmac
except ImportError:
    _stdlib_hmac = None
_stdlib_new = getattr(_stdlib_hmac, "new", None)
_stdlib_compare = getattr(_stdlib_hmac, "compare_digest", None)

_BLOCK = 64  # SHA-256 block size in bytes


def hmac_sha256(key, message):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(message)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def _mac(key, message):
    if _stdlib_new is not None:
        return _stdlib_new(key, message, hashlib.sha256).digest()
    return hmac_sha256(key, message)


def record_bytes(record, encode=dumps):
    """The canonical bytes that a record's signature covers: every field but `sig`.
    `encode`: canonical.dumps or an encoder proved to give the same bytes."""
    return encode({k: v for k, v in record.items() if k != "sig"})


def sign(record, key, encode=dumps):
    """Return the record's signature as 64 lowercase hex characters."""
    return binascii.hexlify(_mac(key, record_bytes(record, encode))).decode()


def _same(a, b):
    # compare without stopping at the first difference
    if _stdlib_compare is not None:
        try:
            return _stdlib_compare(a, b)
        except TypeError:  # non-ASCII text cannot be a hex signature
            return False
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= ord(x) ^ ord(y)
    return diff == 0


def verify(record, key, encode=dumps):
    sig = record.get("sig")
    if not isinstance(sig, str):
        return False
    return _same(sig, sign(record, key, encode))


def mqtt_password(key):
    """The device's MQTT password, derived from its key: the collector can
    write the broker's password file from the keys it already holds, and a
    device needs no second secret. 40 hex characters."""
    return binascii.hexlify(_mac(key, b"hcp/v1 mqtt password")).decode()[:40]
