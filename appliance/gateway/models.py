from django.db import models


class StoredResponse(models.Model):
    """A Responses API answer kept for GET /v1/responses/{id} and for continuing the conversation
    (``previous_response_id``). Tenant-scoped: looked up by id and the caller's tenant together."""

    id = models.CharField(primary_key=True, max_length=64)  # resp_...
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="responses")
    api_key = models.ForeignKey("tenancy.APIKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="responses")
    model_name = models.CharField(max_length=100)
    conversation = models.JSONField()  # the messages it answered, without instructions
    output_text = models.TextField()
    body = models.JSONField()  # the Response object as returned
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.id
