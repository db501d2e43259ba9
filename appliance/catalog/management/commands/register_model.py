"""python manage.py register_model NAME DIR

Registers a Hugging Face-format checkpoint directory as the next version of model NAME (creating the model if new).
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.catalog.services import CheckpointError, register_model_version


class Command(BaseCommand):
    help = "Register a Hugging Face-format checkpoint directory as a model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Model name (letters, digits, '-' and '_')")
        parser.add_argument("directory", help="Checkpoint directory: config.json, weights, tokenizer")
        parser.add_argument("--tokenizer", default="", help="Tokenizer location if not in the directory")
        parser.add_argument("--description", default="")

    def handle(self, *args, **opts) -> None:
        try:
            version, created = register_model_version(
                opts["name"], opts["directory"], tokenizer_uri=opts["tokenizer"], description=opts["description"]
            )
        except CheckpointError as exc:
            raise CommandError(str(exc)) from None
        model = version.model
        verb = "Registered" if created else "Already registered (same weights)"
        self.stdout.write(
            f"{verb} {version}: {model.architecture or '?'} ({model.family or '?'}), "
            f"context {version.context_length}, {version.dtype}, sha256 {version.checksum[:16]}…, chat template: "
            f"{ {True: 'yes', False: 'no (completions only)', None: 'not checked'}[version.has_chat_template] }"
        )
        self.stdout.write(str(version))
