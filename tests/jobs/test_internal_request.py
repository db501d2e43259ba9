"""What run_request sends the engine: the job's priority, and the tenant's cache salt, like a live request."""
from appliance.gateway.auth import Caller
from appliance.gateway.internal import _JobCall
from appliance.gateway.params import parse
from appliance.gateway.quotas import Decision, Limits
from appliance.gateway.routing import Route
from appliance.jobs.executor import ASYNC_PRIORITY, BATCH_PRIORITY


def test_a_job_request_reaches_the_engine_at_its_priority_with_the_tenant_salt():
    caller = Caller(7, 3, "acme", Limits(), Limits(), frozenset({"tiny"}))
    req = parse("chat", b'{"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}')
    route = Route(1, "tiny-chat", "tiny", 256, 0, [])
    sent = _JobCall(caller, req, route, Decision(True), "chatcmpl-batch-1", 0.0, priority=BATCH_PRIORITY)
    generate = sent.generate_request()
    assert (generate.priority, generate.cache_salt, generate.request_id) == (10, "tenant-3", "chatcmpl-batch-1")
    assert generate.messages == [{"role": "user", "content": "hi"}] and generate.sampling["max_tokens"] == 2
    assert 0 < ASYNC_PRIORITY < BATCH_PRIORITY  # live traffic is 0: lower runs first under the priority policy
