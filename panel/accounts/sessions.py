"""Database sessions, read with one prepared statement.

Every signed-in request reads its session, and an open operation page asks for its progress
fragment once a second, so this read is on the panel's busiest path. Django's own store
builds the same SELECT through the ORM on every request, which cost ten times the query
itself (bench/progress_pollers.py). Only the read differs: saving, expiry, flushing and the
key's validation are Django's.
"""

from __future__ import annotations

from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
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
