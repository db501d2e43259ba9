import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .exposition import render


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition for the whole node, for a scraper that sends ``Authorization: Bearer <token>``
    (settings.METRICS_TOKEN: APPLIANCE_METRICS_TOKEN, or the installation's generated one; docs/metrics.md)."""
    if not scrape_token_ok(request.headers.get("Authorization", "")):
        response = JsonResponse({"error": {"message": "/metrics needs the scrape token: Authorization: Bearer "
                                                      "<APPLIANCE_METRICS_TOKEN> (printed by manage.py serve)",
                                           "type": "authentication_error", "param": None,
                                           "code": "invalid_metrics_token"}}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def scrape_token_ok(authorization: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())
