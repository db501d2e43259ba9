"""What the quickstart banner tells a user to paste runs as printed: its Python snippet imports only the appliance's
runtime requirements and streams an answer from a live gateway."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.gateway.management.commands.quickstart import DEMO, banner

from .conftest import ROOT, World, committed, make_deployment

pytestmark = pytest.mark.django_db


def snippet(text: str) -> str:
    (code,) = re.findall(r"python -c '(.*?)'", text, flags=re.S)
    return code


def runtime_requirements() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {re.split(r"[<>=\[ ;#]", line.strip(), maxsplit=1)[0].lower() for line in lines
            if line.strip() and not line.startswith(("#", "-"))}


def test_banner_snippet_imports_only_runtime_requirements():
    code = snippet(banner("http://127.0.0.1:8000", "sk-x", "pw", Path("/tmp"), True))
    imported = {node.module.split(".")[0] for node in ast.walk(ast.parse(code)) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Import)
                 for a in node.names}
    assert imported and imported <= runtime_requirements()


def test_banner_snippet_streams_an_answer_from_the_appliance(world: World):
    committed(make_deployment, DEMO, "tiny", world.engine.model_dir, world.engine, context_length=256)
    code = snippet(banner(world.appliance.url, world.acme_key, "pw", Path("/tmp"), True))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
