"""A one-file Django project served by the end-to-end tests (``portico django_app:application``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt

settings.configure(
    DEBUG=False,
    SECRET_KEY="portico-tests-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    USE_TZ=True,
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,
)
django.setup()


def hello(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(
        {
            "name": name,
            "path": request.path,
            "path_info": request.path_info,
            "host": request.get_host(),
            "absolute": request.build_absolute_uri(),
            "query": request.GET.dict(),
            "cookies": request.COOKIES,
        }
    )


def go(request: HttpRequest) -> HttpResponse:
    response = redirect("hello", name="x")  # reversed with the script prefix (SCRIPT_NAME)
    response.set_cookie("session", "abc")
    return response


@csrf_exempt
def upload(request: HttpRequest) -> JsonResponse:
    upload = request.FILES["file"]
    return JsonResponse(
        {"field": request.POST["field"], "filename": upload.name, "size": upload.size}
    )


@csrf_exempt
def body(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"%d" % len(request.body), content_type="text/plain")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def pieces() -> Iterator[bytes]:
        for i in range(int(request.GET.get("n", "3"))):
            yield b"piece %d\n" % i

    return StreamingHttpResponse(pieces(), content_type="text/plain")


def file(request: HttpRequest) -> FileResponse:
    return FileResponse(open(os.environ["PORTICO_TEST_FILE"], "rb"))


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("django view failed")


def probe(request: HttpRequest, name: str) -> JsonResponse:
    # the endpoints every framework app has alike (tests/test_gateways_nginx.py)
    return JsonResponse(
        {
            "name": name,
            "url": request.build_absolute_uri(),
            "self": request.build_absolute_uri(reverse("probe", args=[name])),
            "remote": request.META["REMOTE_ADDR"],
            "query": request.GET.dict(),
            "cookies": request.COOKIES,
        }
    )


@csrf_exempt
def digest(request: HttpRequest) -> HttpResponse:
    sha = hashlib.sha256()
    size = 0
    while piece := request.read(1 << 16):
        sha.update(piece)
        size += len(piece)
    return HttpResponse(f"{size} {sha.hexdigest()}", content_type="text/plain")


urlpatterns = [
    path("probe/<str:name>", probe, name="probe"),
    path("digest", digest),
    path("hello/<str:name>", hello, name="hello"),
    path("go", go),
    path("upload", upload),
    path("body", body),
    path("stream", stream),
    path("file", file),
    path("fail", fail),
]

application = get_wsgi_application()
