"""The sign-in backend: Django's ModelBackend, whose per-request user lookup also reads
whether the user is an operator, in the same query.

Every signed-in request loads its user, and most pages then ask `can_operate`, which was a
second query (the groups); the progress fragment, polled once a second by every open
operation page, paid both. One statement answers both, as current as before: nothing is
kept between requests.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import connections, router

from panel.accounts.roles import OPERATOR_FLAG, OPERATORS_GROUP
from panel.rows import row_by_pk


class PanelBackend(ModelBackend):
    def get_user(self, user_id):
        try:
            pk = User._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        user = row_by_pk(User, pk, extra=(OPERATOR_FLAG, in_operators_sql()),
                         extra_params=(OPERATORS_GROUP,))  # fmt: skip
        return user if user is not None and self.user_can_authenticate(user) else None


def in_operators_sql() -> str:
    """Whether the row's user is in the group named by the one parameter (SQL)."""
    quote = connections[router.db_for_read(User)].ops.quote_name
    users, groups = quote(User._meta.db_table), quote(Group._meta.db_table)
    members = quote(User.groups.through._meta.db_table)
    return (  # identifiers from the models, quoted; the group name is a parameter
        f"EXISTS (SELECT 1 FROM {members} JOIN {groups} "  # noqa: S608
        f"ON {groups}.{quote('id')} = {members}.{quote('group_id')} "
        f"WHERE {members}.{quote('user_id')} = {users}.{quote('id')} "
        f"AND {groups}.{quote('name')} = %s)"
    )
