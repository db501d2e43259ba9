"""lm-evaluation-harness (`lm_eval --model local-completions`, its own virtualenv, run as a user would) scores a
small local multiple-choice task against the live appliance, its tokenizer taken from the appliance's /tokenize
(no download), and its accuracy is the one transformers' log-likelihoods on the same weights give."""
from __future__ import annotations

import glob
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, World, committed, make_deployment, make_key

pytestmark = pytest.mark.django_db

LM_EVAL = ROOT / ".venv-lmeval" / "bin" / "lm_eval"
TASK_DIR = Path(__file__).parent / "lm_eval_task"


def expected_accuracy(model_dir: Path) -> float:
    """What the harness computes for this task: per question, the choice whose continuation (" " + choice, tokenized
    as the harness splits context and continuation) has the highest log-likelihood given the context."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    docs = [json.loads(line) for line in (TASK_DIR / "tiny_mc.jsonl").read_text().splitlines()]
    correct = 0
    for doc in docs:
        context = f"Question: {doc['question']}\nAnswer:"
        scores = []
        for choice in doc["choices"]:
            ctx = tok(context, add_special_tokens=False).input_ids
            whole = tok(context + " " + choice, add_special_tokens=False).input_ids
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
            scores.append(sum(lp[p - 1, whole[p]].item() for p in range(len(ctx), len(whole))))
        correct += max(range(len(scores)), key=scores.__getitem__) == doc["answer"]
    return correct / len(docs)


@pytest.fixture(scope="module")
def eval_key(world: World, django_db_blocker) -> tuple[str, str]:
    """A deployment and a key that may use only it: the harness's remote tokenizer names no model."""
    def setup() -> str:
        make_deployment("lmeval-tiny", "lmeval-model", world.engine.model_dir, world.engine)
        return make_key("evalco", ["lmeval-model"])[1]

    with django_db_blocker.unblock():
        return "lmeval-tiny", committed(setup)


def test_lm_eval_harness_reports_the_accuracy_transformers_gives(world: World, eval_key, tmp_path):
    if not LM_EVAL.exists():
        pytest.skip("lm-evaluation-harness's virtualenv is absent: `make .venv-lmeval` builds it (make test does)")
    model, key = eval_key
    args = (f"model={model},base_url={world.appliance.v1}/completions,tokenizer_backend=remote,auth_token={key},"
            f"max_retries=1,max_length=256")
    env = {**os.environ, "OPENAI_API_KEY": key, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([str(LM_EVAL), "--model", "local-completions", "--model_args", args, "--batch_size", "4",
                          "--include_path", str(TASK_DIR), "--tasks", "appliance_tiny_mc",
                          "--output_path", str(tmp_path / "out")],
                         cwd=TASK_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    [results_file] = glob.glob(str(tmp_path / "out" / "**" / "results_*.json"), recursive=True)
    acc = json.loads(Path(results_file).read_text())["results"]["appliance_tiny_mc"]["acc,none"]
    assert 0 <= acc <= 1
    assert acc == pytest.approx(expected_accuracy(world.engine.model_dir))
