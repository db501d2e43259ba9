from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0002_model_tool_parser'),
    ]

    operations = [
        migrations.AddField(
            model_name='replica',
            name='secret',
            field=models.CharField(blank=True, editable=False, max_length=128),
        ),
    ]
