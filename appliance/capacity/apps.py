from django.apps import AppConfig


class CapacityConfig(AppConfig):
    name = "appliance.capacity"
    label = "capacity"
    verbose_name = "Capacity (benchmarks and prices)"
