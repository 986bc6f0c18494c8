from django.apps import AppConfig


class PanelConfig(AppConfig):
    name = "panel"
    verbose_name = "LXD panel"

    def ready(self) -> None:
        # Connect the signal receivers: the audit trail's auth events, and the tokens revoked
        # when their user's password changes or the user is deactivated.
        from panel.accounts import audit, tokens  # noqa: F401
