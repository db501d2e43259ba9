"""The encoder replica kind on a random-weight tiny BERT: pooling as the sentence-transformers files say, batched
forwards equal to transformers' own per-input forward, dimensions, input checks, and batching of requests that
arrive together. Runs under transformers 4.57 and 5.x (make test-compat)."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from appliance.runtime.encoder import is_encoder_checkpoint, is_encoder_config
from appliance.runtime.encoder.metrics import EncoderMetrics
from appliance.runtime.encoder.model import EmbedError, EncoderModel
from appliance.runtime.encoder.pooling import PoolingConfig
from appliance.runtime.encoder.runner import EncoderRunner

ST_MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
              {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
              {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]


def write_pooling(root: Path, mode: str = "mean_tokens", modules=ST_MODULES, max_seq_length: int = 32) -> None:
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{m}": m == mode for m in ("cls_token", "mean_tokens", "max_tokens",
                                                      "mean_sqrt_len_tokens")}
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))


def make_bert(root: Path, **config_extra) -> Path:
    """A random-weight 2-layer BERT with a WordPiece tokenizer and sentence-transformers files."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    words = "the a cat dog sat on mat quick brown fox jumps over lazy hello world embeddings are vectors".split()
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                   ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    fast.save_pretrained(str(root))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(str(root), safe_serialization=True)
    if config_extra:
        data = json.loads((root / "config.json").read_text())
        (root / "config.json").write_text(json.dumps({**data, **config_extra}))
    write_pooling(root)
    return root


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_bert(tmp_path_factory.mktemp("bert") / "model")


@pytest.fixture(scope="module")
def encoder(bert_dir) -> EncoderModel:
    return EncoderModel(bert_dir)


TEXTS = ["the cat sat on the mat", "hello", "the quick brown fox jumps over the lazy dog"]


def reference(model_dir: Path, texts: list[str]) -> np.ndarray:
    """transformers' BertModel on each text alone (no padding), mean-pooled and L2-normalised."""
    from transformers import AutoTokenizer, BertModel

    tok, model = AutoTokenizer.from_pretrained(str(model_dir)), BertModel.from_pretrained(str(model_dir)).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            states = model(**tok(text, return_tensors="pt")).last_hidden_state[0]
            vec = states.mean(0)
            out.append((vec / vec.norm()).numpy())
    return np.stack(out)


def test_encoder_checkpoints_are_told_from_generative_ones(bert_dir, tiny_llama):
    assert is_encoder_checkpoint(bert_dir) and not is_encoder_checkpoint(tiny_llama)
    assert not is_encoder_config({"model_type": "bert", "architectures": ["BertLMHeadModel"]})


def test_pooling_follows_the_sentence_transformers_files(tmp_path):
    write_pooling(tmp_path, "cls_token")
    assert PoolingConfig.from_dir(tmp_path) == PoolingConfig("cls", True, 32)
    write_pooling(tmp_path, "max_tokens", modules=ST_MODULES[:2])
    assert PoolingConfig.from_dir(tmp_path) == PoolingConfig("max", False, 32)
    assert PoolingConfig.from_dir(tmp_path / "missing") == PoolingConfig("mean", False, None)
    write_pooling(tmp_path, modules=[*ST_MODULES, {"path": "3_Dense", "type": "sentence_transformers.models.Dense"}])
    with pytest.raises(ValueError, match="Dense"):
        PoolingConfig.from_dir(tmp_path)


def test_batched_embeddings_equal_transformers_per_input(encoder, bert_dir):
    got = np.stack(encoder.embed([encoder.tokenize(t) for t in TEXTS]))
    want = reference(bert_dir, TEXTS)
    assert np.abs(got - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def test_dimensions_truncate_and_renormalise_only_for_matryoshka_models(encoder, tmp_path_factory):
    with pytest.raises(EmbedError, match="Matryoshka") as exc:
        encoder.check_dimensions(8)
    assert exc.value.param == "dimensions"
    encoder.check_dimensions(32)  # its own size is always fine
    matryoshka = EncoderModel(make_bert(tmp_path_factory.mktemp("m") / "model", matryoshka_dimensions=[8, 16, 32]))
    matryoshka.check_dimensions(8)
    with pytest.raises(EmbedError):
        matryoshka.check_dimensions(33)
    ids = matryoshka.tokenize(TEXTS[0])
    full, short = matryoshka.embed([ids])[0], matryoshka.embed([ids], [8])[0]
    assert short.shape == (8,) and np.allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-6)


def test_inputs_too_long_or_outside_the_vocabulary_are_refused(encoder):
    with pytest.raises(EmbedError) as long:
        encoder.check([5] * 33, 0)  # sentence_bert_config.json says 32
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(EmbedError, match="vocabulary"):
        encoder.check([2, 10_000, 3], 1)


async def test_requests_that_arrive_while_a_batch_runs_go_together_in_the_next(encoder):
    metrics = EncoderMetrics("tiny-bert")
    entered, release = threading.Event(), threading.Event()
    real_embed = encoder.embed
    calls: list[int] = []

    def gated(batch, dims=None):
        calls.append(len(batch))
        if len(calls) == 1:
            entered.set()
            release.wait(10)
        return real_embed(batch, dims)

    runner = EncoderRunner(encoder, metrics)
    runner.model = type("Gated", (), {"embed": staticmethod(gated), "info": encoder.info})()
    try:
        first = asyncio.ensure_future(runner.embed([encoder.tokenize("hello")]))
        assert await asyncio.to_thread(entered.wait, 10)
        rest = [asyncio.ensure_future(runner.embed([encoder.tokenize(t)])) for t in TEXTS]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest)
    finally:
        runner.shutdown()
    assert calls == [1, 3]  # the three waiting requests in one forward
    want = np.stack(encoder.embed([encoder.tokenize(t) for t in TEXTS]))
    assert np.abs(np.stack([r[0] for r in results[1:]]) - want).max() < 1e-5


def test_an_encoder_replica_is_sealed_and_answers_bad_input_with_a_4xx(bert_dir):
    """The real encoder replica process: 401 without the credential on every route, 4xx JSON (never a 500) for
    malformed /embed bodies, and an embedding for a good one."""
    import httpx

    from .replica_server import AUTH, start_server, stop_server

    proc, url = start_server(bert_dir, "--port", "0")
    try:
        with httpx.Client(base_url=url, timeout=60) as intruder:
            for method, path in [("GET", "/health"), ("GET", "/metrics"), ("POST", "/embed"), ("POST", "/generate")]:
                r = intruder.request(method, path, json={"request_id": "x", "input": ["hi"]})
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_replica_credential"
        with httpx.Client(base_url=url, timeout=60, headers=AUTH) as c:
            for body in [b"{not json", b"[1]", b"{}", b'{"input": ["hi"]}', b'{"request_id": "e", "input": "hi"}',
                         b'{"request_id": "e"}', b'{"request_id": 1, "input": ["hi"]}',
                         b'{"request_id": "e", "input": [[1, "a"]]}', b'{"request_id": "e", "input": [{}]}',
                         b'{"request_id": "e", "input": ["hi"], "dimensions": "all"}']:
                r = c.post("/embed", content=body)
                assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
                assert r.json()["error"]["type"] == "invalid_request_error"
            r = c.post("/embed", json={"request_id": "ok", "input": ["hello"]})
            assert r.status_code == 200 and r.json()["count"] == 1
    finally:
        stop_server(proc)
