"""A stand-in for a node's web process asking for a compile, for tests: run as
`python -m tests.lifecycle.compile_requester VERSION_ID GO_FILE HOLD_S`. Prints "ready", waits until GO_FILE exists,
then calls request_compile inside a transaction that it keeps open HOLD_S seconds (as a slow request would) and
prints "job <id>" and "committed"."""
from __future__ import annotations

import sys
import time
from pathlib import Path


def main(version_id: int, go_file: Path, hold_s: float) -> None:
    import django

    django.setup()
    from django.db import transaction

    from appliance.catalog.models import ModelVersion
    from appliance.lifecycle.services import request_compile

    version = ModelVersion.objects.get(pk=version_id)
    print("ready", flush=True)
    while not go_file.exists():
        time.sleep(0.01)
    with transaction.atomic():
        job = request_compile(version, "cpu", dtype="bfloat16")
        print(f"job {job.pk}", flush=True)
        time.sleep(hold_s)
    print("committed", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
