"""gunicorn settings for the floor beside bench/progress_pollers.py: the panel served as
bin/panel serves it, except that the progress view answers without rendering its fragment.
Everything else a poll does stays: every middleware, the session, the user with their role,
the access check and the operation's row. What a poll costs beyond this floor is the
fragment's template; what the floor costs beyond /healthz is a signed-in Django request.
Not run on its own (gunicorn reads it with -c)."""


def post_worker_init(worker) -> None:
    """Once the worker has loaded Django: the view's card is a bare section."""
    from django.utils.safestring import SafeString

    import panel.web.views.operations as views

    def unrendered(operation, **_) -> SafeString:
        return SafeString(f'<section id="operation-{operation.pk}"></section>')

    views.progress_card = unrendered
