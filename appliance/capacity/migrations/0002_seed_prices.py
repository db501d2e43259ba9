"""Seed InstancePrice with AWS on-demand list prices (us-east-1, Linux, USD per hour) for the Inferentia2 and
Trainium instances. List prices to edit: set your region's, reserved or savings-plan rates in the admin."""
from decimal import Decimal

from django.db import migrations

LIST_PRICES = {
    "inf2.xlarge": "0.7582",
    "inf2.8xlarge": "1.9679",
    "inf2.24xlarge": "6.4906",
    "inf2.48xlarge": "12.9813",
    "trn1.2xlarge": "1.3438",
    "trn1.32xlarge": "21.5000",
    "trn1n.32xlarge": "24.7800",
}
NOTE = "AWS on-demand list price, us-east-1 (seeded; edit to your rate)"


def seed(apps, schema_editor):
    InstancePrice = apps.get_model("capacity", "InstancePrice")
    for instance_type, usd in LIST_PRICES.items():
        InstancePrice.objects.get_or_create(instance_type=instance_type,
                                            defaults={"hourly_usd": Decimal(usd), "note": NOTE})


def unseed(apps, schema_editor):
    InstancePrice = apps.get_model("capacity", "InstancePrice")
    InstancePrice.objects.filter(instance_type__in=LIST_PRICES, note=NOTE).delete()


class Migration(migrations.Migration):
    dependencies = [("capacity", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
