"""The store's people, kept in the journal and managed from the manager page (no restart): each
with a role (staff or manager), the zones they work, a PIN to sign in on a handheld in a second
and, if the manager prints one, a QR code that signs them in when scanned.

Secrets are stored only as hashes: the PIN with scrypt (RFC 7914) and a salt of its own, so a
copy of the journal does not give PINs away to a quick search of the 10^4 to 10^8 there are;
the QR code, 192 random bits, as its SHA-256 (nothing to search). Sign-in tries are limited per
person and per client by the web app (``edge_agent.web_security``), which makes a short PIN
safe to use. People configured with tokens (``http.tokens``) sign in as before.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import sqlite3
import time
from typing import Any

from rules.trackers.alerts import Actor
from storeedge.errors import PayloadError

SCHEMA = """
CREATE TABLE IF NOT EXISTS staff (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('staff', 'manager')),
    zones TEXT NOT NULL,          -- JSON list; ["*"]: every zone
    pin_salt BLOB,
    pin_hash BLOB,
    qr_hash TEXT UNIQUE,
    active INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS store_secret (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""



def check_pin(pin: str) -> None:
    """A PayloadError naming what is wrong with a PIN: 4 to 8 digits, not one digit repeated,
    not a run up or down (1234, 9876)."""
    if not (pin.isdigit() and pin.isascii() and 4 <= len(pin) <= 8):
        raise PayloadError("pin: 4 to 8 digits", source="staff")
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if steps in ({0}, {1}, {-1}):
        raise PayloadError("pin: too easy to guess (one digit repeated, or a run)",
                           source="staff")


def set_person(conn: sqlite3.Connection, name: str, role: str, zones: list[str],
               pin: str | None = None) -> dict[str, Any]:
    """Add a person, or change their role and zones (and PIN, when given); returns them as
    ``people`` lists them."""
    if pin is not None:
        check_pin(pin)
    now = time.time()
    with conn:
        conn.execute(
            "INSERT INTO staff (name, role, zones, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET role = excluded.role, zones = excluded.zones,"
            " active = 1, updated_at = excluded.updated_at",
            (name, role, json.dumps(sorted(zones)), now))
        if pin is not None:
            salt = secrets.token_bytes(16)
            conn.execute("UPDATE staff SET pin_salt = ?, pin_hash = ? WHERE name = ?",
                         (salt, _hash_pin(pin, salt), name))
    return next(p for p in people(conn) if p["name"] == name)


def remove(conn: sqlite3.Connection, name: str) -> bool:
    """Sign a person out of the store for good: their PIN and QR code stop working."""
    with conn:
        return conn.execute("UPDATE staff SET active = 0, pin_hash = NULL, qr_hash = NULL,"
                            " updated_at = ? WHERE name = ? AND active = 1",
                            (time.time(), name)).rowcount == 1


def new_qr(conn: sqlite3.Connection, name: str) -> str | None:
    """A new sign-in code for a person's QR card (the previous one stops working); None when
    nobody active has that name."""
    code = "se1." + secrets.token_urlsafe(24)
    with conn:
        changed = conn.execute("UPDATE staff SET qr_hash = ?, updated_at = ? WHERE name = ?"
                               " AND active = 1", (_hash_code(code), time.time(), name)).rowcount
    return code if changed else None


def by_pin(conn: sqlite3.Connection, name: str, pin: str) -> Actor | None:
    row = conn.execute("SELECT role, zones, pin_salt, pin_hash FROM staff WHERE name = ?"
                       " AND active = 1", (name,)).fetchone()
    # the same work for a name nobody has: the time spent tells nothing
    salt, stored = (row[2], row[3]) if row is not None and row[3] else (b"\0" * 16, b"")
    ok = hmac.compare_digest(_hash_pin(pin, salt), stored)
    return _actor(name, row[0], row[1]) if ok and row is not None else None


def by_qr(conn: sqlite3.Connection, code: str) -> Actor | None:
    row = conn.execute("SELECT name, role, zones FROM staff WHERE qr_hash = ? AND active = 1",
                       (_hash_code(code),)).fetchone()
    return None if row is None else _actor(*row)


def person(conn: sqlite3.Connection, name: str) -> tuple[Actor, str] | None:
    """An active person and their version (it changes with every change to them)."""
    row = conn.execute("SELECT role, zones, updated_at FROM staff WHERE name = ? AND active = 1",
                       (name,)).fetchone()
    return None if row is None else (_actor(name, row[0], row[1]), repr(row[2]))


def session_key(conn: sqlite3.Connection) -> bytes:
    """The store's key for the sessions of people kept here (made once, kept in the journal, so
    sessions hold across restarts)."""
    with conn:
        conn.execute("INSERT OR IGNORE INTO store_secret (name, value) VALUES ('sessions', ?)",
                     (secrets.token_bytes(32),))
        (key,) = conn.execute("SELECT value FROM store_secret WHERE name = 'sessions'").fetchone()
    return bytes(key)


def people(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Everyone active, without secrets: whether they have a PIN and a QR card."""
    return [{"name": n, "role": r, "zones": json.loads(z), "pin": ph is not None,
             "qr": qh is not None, "updated_at": at}
            for n, r, z, ph, qh, at in conn.execute(
                "SELECT name, role, zones, pin_hash, qr_hash, updated_at FROM staff"
                " WHERE active = 1 ORDER BY name")]


def _actor(name: str, role: str, zones: str) -> Actor:
    return Actor(name, role, frozenset(json.loads(zones)))


def _hash_pin(pin: str, salt: bytes) -> bytes:
    # ~16 MB and some tens of milliseconds a try
    return hashlib.scrypt(pin.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()
