"""Neuron end to end on the SDK emulator (APPLIANCE_NEURON_SDK=emulator: the project's labelled test double of NxD
Inference 0.8, computing on the CPU): register -> `deploy --device neuron` queues a compile job for target neuron
that a real Celery worker runs -> a real node agent with 4 emulated NeuronCores starts replicas with
NEURON_RT_VISIBLE_CORES -> requests through the gateway under uvicorn with the official openai client, every answer
transformers' greedy answer on the same weights, token for token.

The emulator stands in for the SDK only; everything above it (lifecycle, agent, replica server, gateway) is the
product. It proves nothing about Inferentia hardware or the real compiler.
"""
from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.catalog.models import Deployment, Replica
from appliance.lifecycle.agent.replica_process import core_env
from appliance.lifecycle.models import CompileJob
from appliance.lifecycle.services import deploy
from tests.lifecycle.conftest import (  # noqa: F401 - fixtures
    api_key, lc_home, process_env, register_version, start_agent, start_gateway, start_worker, wait_until,
)
from tests.runtime.conftest import PROMPTS, hf_greedy

pytestmark = [pytest.mark.celery, pytest.mark.neuron_emulator]

MAX_MODEL_LEN = 2048  # context buckets [512, 1024, 2048] on the block layout
MAX_TOKENS = 16
RUNNER_TOKENS = 480  # the request that decodes while the others prefill
SHARED_PREFIX = 1500  # tokens; past the second-largest bucket (1024)
CHUNK = 512  # max_num_batched_tokens on the block layout: a 1,600-token prompt prefills in four chunks


@pytest.fixture(autouse=True)
def emulated_neuron_sdk(monkeypatch):
    """Every process the test starts (worker, agent, its replicas, gateway) inherits the emulator switch."""
    monkeypatch.setenv("APPLIANCE_NEURON_SDK", "emulator")
    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES", raising=False)


@pytest.fixture(scope="module")
def checkpoint(checkpoint_factory) -> Path:
    return checkpoint_factory("llama", max_position_embeddings=MAX_MODEL_LEN)


@dataclass
class Served:
    name: str
    client: openai.OpenAI
    deployment: Deployment
    job: CompileJob

    def replicas(self) -> list[Replica]:
        return list(Replica.objects.filter(deployment=self.deployment, state="ready").order_by("index"))


@pytest.fixture
def serve_on_emulated_cores(start_worker, start_agent, start_gateway, register_version, api_key, checkpoint):
    """serve(kv_layout, replicas, engine_args) -> Served: the whole path up to ready replicas and a client."""

    def serve(kv_layout: str, replicas: int = 1, engine_args: dict | None = None) -> Served:
        start_worker()
        name = f"emu-{kv_layout}"
        register_version(name, checkpoint)
        result = deploy(name, device="neuron", kv_layout=kv_layout, cores_per_replica=2, replicas=replicas)
        if engine_args:  # before the agent starts, so every replica launches with them
            Deployment.objects.filter(pk=result.deployment.pk).update(engine_args=engine_args)
        start_agent(cores=4, device="neuron")
        url = start_gateway(GATEWAY_COLD_START_TIMEOUT_S=240)
        job = wait_until(lambda: CompileJob.objects.filter(pk=result.compile_job.pk, status__in=CompileJob.FINISHED)
                         .first(), 120, "the neuron compile job")
        assert job.status == "succeeded", job.log
        wait_until(lambda: Replica.objects.filter(deployment=result.deployment, state="ready").count() == replicas,
                   180, f"{replicas} ready replica(s)")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=api_key([name]), max_retries=0, timeout=120)
        return Served(name, client, Deployment.objects.get(pk=result.deployment.pk), job)

    return serve


@dataclass
class Answer:
    prompt: list[int]
    max_tokens: int
    text: str = ""
    tokens: list[str] = field(default_factory=list)  # each generated token as the logprobs name it
    first_token_at: float = 0.0
    finished_at: float = 0.0


def complete(served: Served, prompt: list[int], max_tokens: int = MAX_TOKENS, delay_s: float = 0.0,
             started: threading.Event | None = None) -> Answer:
    """A greedy streamed completion of token ids through the gateway; `started` is set at the first token."""
    time.sleep(delay_s)
    answer = Answer(prompt, max_tokens)
    stream = served.client.completions.create(model=served.name, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                              logprobs=0, stream=True, extra_body={"ignore_eos": True})
    for chunk in stream:
        for choice in chunk.choices:
            answer.text += choice.text
            answer.tokens += choice.logprobs.tokens if choice.logprobs else []
        if answer.tokens and not answer.first_token_at:
            answer.first_token_at = time.monotonic()
            if started is not None:
                started.set()
    answer.finished_at = time.monotonic()
    return answer


def complete_concurrently(served: Served, prompts: list[list[int]], stagger_s: float = 0.0) -> list[Answer]:
    """One request per prompt, all in flight together, each sent `stagger_s` after the one before."""
    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda ip: complete(served, ip[1], delay_s=stagger_s * ip[0]), enumerate(prompts)))


def complete_while_decoding(served: Served, runner: list[int], prompts: list[list[int]]) -> tuple[Answer, list[Answer]]:
    """Send `prompts` once `runner` has its first token and while it decodes RUNNER_TOKENS more, on a deployment of
    one replica: their prefills share engine steps with its decodes."""
    started = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(complete, served, runner, RUNNER_TOKENS, started=started)
        assert started.wait(60), "the first request produced no token"
        answers = complete_concurrently(served, prompts)
        runner_answer = running.result()
    assert runner_answer.finished_at > max(a.first_token_at for a in answers), "a prefill ran after the decodes"
    return runner_answer, answers


def assert_greedy_as_transformers(checkpoint: Path, answers: list[Answer]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    expected_by_answer = {}
    for max_tokens in {a.max_tokens for a in answers}:
        group = [a for a in answers if a.max_tokens == max_tokens]
        expected_by_answer.update(zip(map(id, group), hf_greedy(checkpoint, [a.prompt for a in group], max_tokens)))
    for answer in answers:
        expected = expected_by_answer[id(answer)]
        where = f"prompt of {len(answer.prompt)} tokens"
        assert answer.tokens == [tok.decode([t]) for t in expected], where
        assert answer.text == tok.decode(expected, skip_special_tokens=True), where


def engine_metrics(replica: Replica) -> dict[str, float]:
    """The replica's own Prometheus samples: histogram buckets as 'name le=X', everything else summed by name."""
    text = httpx.get(f"http://{replica.host}:{replica.port}/metrics", headers=replica.auth_headers, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = f"{s.name} le={s.labels['le']}" if "le" in s.labels else s.name
            out[key] = out.get(key, 0.0) + s.value
    return out


def assert_replicas_run_on_their_own_cores(served: Served) -> None:
    from django.conf import settings

    replicas = served.replicas()
    assert len({tuple(r.cores) for r in replicas}) == len(replicas), "two replicas placed on the same cores"
    for replica in replicas:
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{replica.pid}/environ").read_text().split("\0")
                       if "=" in kv)
        visible = core_env("neuron", replica.cores)["NEURON_RT_VISIBLE_CORES"]
        assert len(replica.cores) == 2 and environ["NEURON_RT_VISIBLE_CORES"] == visible
        assert environ["APPLIANCE_NEURON_SDK"] == "emulator"
        log = (Path(settings.RUN_DIR) / "replicas" / f"{served.name}-{replica.index}-{replica.pk}.log").read_text()
        assert f"onto emulated NeuronCores {visible}" in log


def assert_compiled_by_the_emulator(served: Served, kv_layout: str) -> None:
    job = served.job
    assert (job.target, job.tp_degree, job.kv_layout) == ("neuron", 2, kv_layout)
    assert served.deployment.artifact_id == job.artifact_id
    artifact = json.loads((Path(job.artifact.uri) / "artifact.json").read_text())
    assert artifact["options"]["kv_layout"] == kv_layout and artifact["options"]["tp_degree"] == 2
    assert "TEST DOUBLE" in artifact["sdk"]["emulator"]


def random_ids(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(4, 512) for _ in range(n)]  # the tiny tokenizer's 512 ids, special tokens (0-3) left out


def short_prompts(checkpoint: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    return [tok(p).input_ids for p in PROMPTS[:3]]


@pytest.mark.slow
def test_block_layout_serves_mixed_steps_chunked_prefill_and_a_1500_token_cached_prefix_as_transformers(
        serve_on_emulated_cores, checkpoint):
    served = serve_on_emulated_cores("block", engine_args={
        "enable_prefix_caching": True, "enable_chunked_prefill": True, "max_num_batched_tokens": CHUNK})
    assert_compiled_by_the_emulator(served, "block")
    assert_replicas_run_on_their_own_cores(served)
    rng = random.Random(0)
    prefix = random_ids(rng, SHARED_PREFIX)
    long_prompt = prefix + random_ids(rng, 100)  # chunks of 512: the last ones start past 1024
    cached_prompt = prefix + random_ids(rng, 100)
    [replica] = served.replicas()

    runner, mixed = complete_while_decoding(served, random_ids(rng, 7), [long_prompt, *short_prompts(checkpoint)])
    before = engine_metrics(replica)
    cached = complete(served, cached_prompt)
    after = engine_metrics(replica)

    assert_greedy_as_transformers(checkpoint, [runner, *mixed, cached])
    hits = "appliance_engine_prefix_cache_hit_tokens_total"
    assert after[hits] - before[hits] >= SHARED_PREFIX // 32 * 32, "the 1,500-token prefix was not served from cache"
    steps = after["appliance_engine_step_batched_tokens_count"]
    assert after["appliance_engine_step_batched_tokens_bucket le=512.0"] == steps, "a prefill was not chunked"


@pytest.mark.slow
def test_contiguous_layout_serves_staggered_concurrent_requests_on_two_replicas_as_transformers(
        serve_on_emulated_cores, checkpoint):
    served = serve_on_emulated_cores("contiguous", replicas=2)
    assert_compiled_by_the_emulator(served, "contiguous")
    assert_replicas_run_on_their_own_cores(served)
    rng = random.Random(1)
    prompts = [random_ids(rng, n) for n in (1, 300, 700, 90)] + short_prompts(checkpoint)

    answers = complete_concurrently(served, prompts, stagger_s=0.03)

    assert_greedy_as_transformers(checkpoint, answers)
