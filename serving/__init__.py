"""Flask service answering trading-volume predictions from the registered MLflow model.

Production: ``make serve`` (``gunicorn --config serving/gunicorn_conf.py``); development:
``flask --app serving run``.

``create_app`` is imported on first use, so that gunicorn's master can import the small modules
it needs (:mod:`serving.watcher`, :mod:`serving.gunicorn_worker`) without loading the app.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from serving.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
