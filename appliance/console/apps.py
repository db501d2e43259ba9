from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "appliance.console"
    label = "console"
