"""/v1/: the OpenAI-compatible API."""
from django.urls import path

from . import embeddings, openapi, views

urlpatterns = [
    path("openapi.json", openapi.openapi_json, name="v1-openapi"),
    path("models", views.models, name="v1-models"),
    path("models/<path:name>", views.model_detail, name="v1-model"),
    path("completions", views.completions, name="v1-completions"),
    path("chat/completions", views.chat_completions, name="v1-chat-completions"),
    path("responses", views.responses, name="v1-responses"),
    path("responses/<str:response_id>", views.response_detail, name="v1-response"),
    path("embeddings", embeddings.embeddings, name="v1-embeddings"),
]
