import json

import pytest

from appliance.jobs.services import parse_line

EP = "/v1/chat/completions"


def line(**fields) -> bytes:
    return json.dumps({"custom_id": "a", "method": "POST", "url": EP, "body": {"model": "m"}, **fields}).encode()


def test_a_well_formed_line_gives_its_body():
    assert parse_line(1, line(), EP, set()) == ("a", {"model": "m"}, None)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (line(custom_id=""), "custom_id must be a non-empty string"),
        (line(custom_id=7), "custom_id must be a non-empty string"),
        (line(method="GET"), "method must be POST"),
        (line(url="/v1/embeddings"), "url must be the batch's endpoint"),
        (line(body="hi"), "body must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_lines_are_rejected_with_the_line_number(raw, message):
    custom_id, body, error = parse_line(12, raw, EP, set())
    assert body is None
    assert message in error["message"] and error["message"].startswith("line 12:")


def test_duplicate_custom_ids_are_rejected():
    seen: set[str] = set()
    assert parse_line(1, line(), EP, seen)[2] is None
    assert "duplicate custom_id" in parse_line(2, line(), EP, seen)[2]["message"]
