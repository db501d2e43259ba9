from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "appliance.gateway"
    label = "gateway"

    def ready(self) -> None:
        from .invalidation import connect_signals

        connect_signals()
