"""One peer-benchmark pass through vLLM for CPU: run with the benchmark's vLLM virtualenv python, not the appliance's.

    <vllm-venv>/bin/python peer_vllm_worker.py job.json result.json

Imports only the standard library and vllm. vLLM's offline engine is stepped directly (`LLMEngine.add_request` with
prompt token ids, then `step()` until done), the same loop the benchmark drives the appliance's EngineCore with;
greedy, EOS ignored, a short warm-up request before the clock starts. Writes, per request, the generated token ids
and the time (seconds since all requests were submitted) each token was seen.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main(job_path: str, out_path: str) -> None:
    from vllm import LLM, SamplingParams, __version__
    from vllm.sampling_params import RequestOutputKind

    job = json.loads(open(job_path).read())
    engine_args = {
        "model": job["model"],
        "dtype": job["dtype"],
        "max_model_len": job["max_model_len"],
        "max_num_seqs": job["max_num_seqs"],
        "max_num_batched_tokens": job["max_num_batched_tokens"],
        "seed": 0,
        **job.get("vllm_args", {}),
    }
    t_load = time.perf_counter()
    llm = LLM(**engine_args)
    engine = llm.llm_engine
    warm = job["warmup"]
    _drain(engine, [("warmup", warm["prompt_token_ids"], warm["max_tokens"])], SamplingParams)
    load_s = time.perf_counter() - t_load

    ids = {r["id"] for r in job["requests"]}
    tokens: dict[str, list[int]] = {r["id"]: [] for r in job["requests"]}
    times: dict[str, list[float]] = {r["id"]: [] for r in job["requests"]}
    t0 = time.perf_counter()
    for r in job["requests"]:
        params = SamplingParams(max_tokens=r["max_tokens"], temperature=0.0, ignore_eos=True,
                                output_kind=RequestOutputKind.CUMULATIVE)
        engine.add_request(r["id"], {"prompt_token_ids": list(r["prompt_token_ids"])}, params)
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = time.perf_counter() - t0
        for out in outputs:
            rid = out.request_id if out.request_id in ids else out.request_id.rsplit("-", 1)[0]
            new = list(out.outputs[0].token_ids)[len(tokens[rid]):]
            tokens[rid].extend(new)
            times[rid].extend([now] * len(new))
    wall = time.perf_counter() - t0
    result = {
        "system": "vllm",
        "wall_s": wall,
        "load_and_warmup_s": load_s,
        "requests": {rid: {"token_ids": tokens[rid], "token_times": times[rid]} for rid in tokens},
        "settings": {**{k: v for k, v in engine_args.items() if k != "model"},
                     **{k: os.environ.get(k) for k in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE",
                                                       "OMP_NUM_THREADS", "VLLM_ENABLE_V1_MULTIPROCESSING",
                                                       "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}},
        "versions": {"vllm": __version__, "torch": _torch_version()},
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


def _drain(engine, reqs, sampling_params_cls) -> None:
    for rid, prompt, n in reqs:
        engine.add_request(rid, {"prompt_token_ids": list(prompt)},
                           sampling_params_cls(max_tokens=n, temperature=0.0, ignore_eos=True))
    while engine.has_unfinished_requests():
        engine.step()


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
