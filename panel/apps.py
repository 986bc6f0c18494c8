from django.apps import AppConfig


class PanelConfig(AppConfig):
    name = "panel"
    verbose_name = "LXD panel"

    def ready(self) -> None:
        from panel import audit  # noqa: F401  (connects the auth signal receivers)
