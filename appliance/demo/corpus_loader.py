"""The demo corpus: plain-text files (public-domain works) split into documents, plus the project's own chat
exchanges. The repository bundles only texts written out for the project (see corpus/SOURCES.md); drop more
public-domain .txt files into the folder, or pass another folder, to retrain on more."""
from __future__ import annotations

import json
import re
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
CHATS = "chat_exchanges.jsonl"


def load_documents(corpus_dir: Path = CORPUS_DIR) -> list[str]:
    """Every book split into its documents (tales, chapters, articles); documents are separated by 3+ blank lines."""
    docs: list[str] = []
    for path in sorted(corpus_dir.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        docs.extend(d.strip() for d in re.split(r"\n{3,}", text) if d.strip())
    return docs


def load_chats(corpus_dir: Path = CORPUS_DIR) -> list[list[dict[str, str]]]:
    """The chat exchanges, each a list of {"role", "content"} messages."""
    lines = (corpus_dir / CHATS).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]

