import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Under ASGI a request's sync code may run on any thread, and a persistent
# connection per thread piles up until PostgreSQL refuses clients: the web
# process closes its connections after each request (workers keep theirs).
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()

if settings.DEBUG:
    # Local use (`make run`): serve the admin's static files without a proxy.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
