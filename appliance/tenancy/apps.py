from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "appliance.tenancy"
    label = "tenancy"
