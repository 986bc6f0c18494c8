"""The three roles: viewers look; operators (the `operators` group) run operations and collect
bundles; administrators (staff) also manage hosts and users."""

from __future__ import annotations

OPERATORS_GROUP = "operators"
# Set on the request's user by panel.accounts.backends.PanelBackend, read in the same query
# as the user; a user loaded any other way (an API token's) is asked with a query.
OPERATOR_FLAG = "panel_in_operators_group"


def can_manage_hosts(user) -> bool:
    return user.is_authenticated and (user.is_staff or user.is_superuser)


def can_operate(user) -> bool:
    """Operators (and admins) run operations; everyone else only looks."""
    if not user.is_authenticated:
        return False
    if can_manage_hosts(user):
        return True
    known = getattr(user, OPERATOR_FLAG, None)
    if known is not None:
        return bool(known)
    return user.groups.filter(name=OPERATORS_GROUP).exists()
