"""Files, Batches (OpenAI Batch API) and async inference under /v1/."""
from django.urls import path, re_path

from . import views

urlpatterns = [
    path("files", views.files, name="openai-files"),
    path("files/<str:file_id>", views.file_detail, name="openai-file"),
    path("files/<str:file_id>/content", views.file_content, name="openai-file-content"),
    path("batches", views.batches, name="openai-batches"),
    path("batches/<str:batch_id>", views.batch_detail, name="openai-batch"),
    path("batches/<str:batch_id>/cancel", views.batch_cancel, name="openai-batch-cancel"),
    re_path(r"^async/(?P<endpoint>completions|chat/completions)$", views.async_create, name="async-create"),
    path("async/<str:request_id>", views.async_detail, name="async-request"),
]
