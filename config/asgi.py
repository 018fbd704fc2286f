"""The web process: `uvicorn config.asgi:application` (runstack, compose, the image).

Synchronous views (the API, the admin) run on WEB_THREADS threads through Django's WSGI
handler, async ones (the job event stream) on the event loop (core/serving.py).
"""

import gc
import os

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

from core.serving import HybridApplication

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# PostgreSQL connections are borrowed from a pool per process and given back after each
# request (or each read of a stream): as many as there are busy threads, none opened per
# request.
os.environ.setdefault("DATABASE_POOL", "1")
# Without a pool (SQLite, or DATABASE_POOL=0), connections close after each request:
# persistent ones would pile up, one per thread that ever served a stream's read.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
async_views = get_asgi_application()
sync_views = get_wsgi_application()
if settings.DEBUG:
    # Local use (`make run`): serve the admin's static files without a proxy.
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    sync_views = StaticFilesHandler(sync_views)

application = HybridApplication(asgi=async_views, wsgi=sync_views, threads=settings.WEB_THREADS)

# Everything loaded so far (Django, the apps, their modules: about 120 000 objects) lives
# as long as the process: kept out of the garbage collector's full passes, which would
# otherwise walk all of it every few dozen requests.
gc.collect()
gc.freeze()
