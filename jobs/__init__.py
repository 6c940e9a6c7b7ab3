"""Celery wiring: `celery -A jobs worker` and `celery -A jobs beat`.

Tasks are thin: they take ids or names, call one `recert` function, and return its
summary. All logic lives in `recert` and runs without Celery.
"""

from jobs.celery_app import app

__all__ = ["app"]
