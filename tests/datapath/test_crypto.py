"""Master key wrapping, login key, chunk ids, sealing."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.datapath import crypto
from p2pbak.errors import ExitCode, P2pbakError, WrongPassphrase


def test_wrap_unwrap_and_wrong_passphrase() -> None:
    master = crypto.new_master_key()
    keyfile = crypto.wrap_master_key(master, "correct horse ✓")
    assert master not in keyfile
    assert crypto.unwrap_master_key(keyfile, "correct horse ✓") == master
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as info:
        crypto.unwrap_master_key(keyfile, "correct horse")
    assert info.value.exit_code == ExitCode.WRONG_PASSPHRASE
    # Each wrapping uses a fresh salt and nonce.
    assert crypto.wrap_master_key(master, "correct horse ✓") != keyfile


def test_damaged_or_future_keyfile() -> None:
    keyfile = crypto.wrap_master_key(crypto.new_master_key(), "pw")
    with pytest.raises(P2pbakError, match="damaged"):
        crypto.unwrap_master_key(b"\x93garbage", "pw")
    doc = msgpack.unpackb(keyfile)
    doc["v"] = 99
    with pytest.raises(P2pbakError, match="not supported"):
        crypto.unwrap_master_key(msgpack.packb(doc), "pw")


def test_login_key_is_independent_and_deterministic() -> None:
    salt = crypto.new_salt()
    a = crypto.login_key("pw", "alice", salt)
    assert a == crypto.login_key("pw", "alice", salt) and len(a) == 32
    assert a != crypto.login_key("pw2", "alice", salt)
    assert a != crypto.login_key("pw", "bob", salt)
    assert a != crypto.login_key("pw", "alice", crypto.new_salt())
    # Knowing the login key (and the key file's salt) must not open the key file.
    master = crypto.new_master_key()
    keyfile = crypto.wrap_master_key(master, "pw")
    doc = msgpack.unpackb(keyfile)
    assert a not in keyfile
    assert crypto.login_key("pw", "alice", doc["salt"]) != crypto._scrypt(
        "pw", crypto._WRAP_CONTEXT + doc["salt"], doc["N"], doc["r"], doc["p"])


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=20))
def test_seal_round_trip_and_tamper(plain: bytes, aad: bytes) -> None:
    keys = crypto.Keys.derive(b"k" * 32)
    sealed = crypto.seal(keys.blob, plain, aad)
    assert crypto.open_sealed(keys.blob, sealed, aad) == plain
    tampered = bytearray(sealed)
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises(crypto.DamagedBlob):
        crypto.open_sealed(keys.blob, bytes(tampered), aad)
    with pytest.raises(crypto.DamagedBlob):
        crypto.open_sealed(crypto.Keys.derive(b"x" * 32).blob, sealed, aad)


def test_chunk_ids_are_keyed() -> None:
    one, two = crypto.Keys.derive(b"a" * 32), crypto.Keys.derive(b"b" * 32)
    assert one.chunk_id_of(b"data") == one.chunk_id_of(memoryview(b"data"))
    assert one.chunk_id_of(b"data") != two.chunk_id_of(b"data")
    assert one.chunk_id != one.blob
