"""Database sessions, read with one prepared statement.

Every signed-in request reads its session, and an open operation page asks for its progress
fragment once a second, so this read is on the panel's busiest path. Django's own store
builds the same SELECT through the ORM on every request, which cost ten times the query
itself (bench/progress_pollers.py). Only the read differs: saving, expiry, flushing and the
key's validation are Django's.

Decoding, too, is Django's, done once per distinct session data: verifying the signature
(an HMAC), base64 and zlib were a third of a signed-in poll's session cost, for the same
bytes each second. What is kept is the verified payload, keyed by the exact signed text, and
each request still parses its own copy of it; the row is read from the database on every
request, so a session ended elsewhere (sign-out, expiry, a flushed store) ends here at once.
A changed password still ends other sessions: Django checks the session's hash against the
user's row on every request, which this does not touch.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.contrib.sessions.backends import db
from django.core import signing
from django.db import connections, router
from django.utils import timezone

# Sessions whose verified payload is kept; a signed session's text is about 200 bytes.
VERIFIED_KEPT = 2048


class _Payload(signing.JSONSerializer):
    """signing.loads' serializer that returns the verified bytes instead of parsing them."""

    def loads(self, data: bytes) -> bytes:
        return data


@lru_cache(maxsize=VERIFIED_KEPT)
def _verified_payload(session_data: str, salt: str, key: str, fallbacks: tuple) -> bytes:
    """The payload of Django's signed session text under these keys; raises as signing.loads
    does, and a failure is not kept, so a bad text is checked (and logged) every time."""
    return signing.loads(
        session_data, key=key, salt=salt, serializer=_Payload, fallback_keys=list(fallbacks)
    )


class SessionStore(db.SessionStore):
    def decode(self, session_data):
        try:
            keys = settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS)
            payload = _verified_payload(session_data, self.key_salt, *keys)
            return self.serializer().loads(payload)
        except Exception:  # Django's own decode says which, logs it and answers {}
            return super().decode(session_data)

    def _get_session_from_db(self):
        if self.session_key is None:  # no cookie, or one Django refused as malformed
            return None
        model = self.model
        alias = router.db_for_read(model)
        connection = connections[alias]
        quote = connection.ops.quote_name
        sql = (  # identifiers from the model, quoted; values are parameters
            f"SELECT {quote('session_data')} FROM {quote(model._meta.db_table)} "  # noqa: S608
            f"WHERE {quote('session_key')} = %s AND {quote('expire_date')} > %s"
        )
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.session_key, now])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None  # as Django does: the next save makes a new key
            return None
        return model(session_key=self.session_key, session_data=row[0])
