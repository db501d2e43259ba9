from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .exposition import render


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition for the whole node (no auth, like most exporters; restrict it at nginx)."""
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
