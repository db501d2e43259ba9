from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0003_modelversion_has_chat_template'),
    ]

    operations = [
        migrations.AddField(
            model_name='replica',
            name='secret',
            field=models.CharField(blank=True, editable=False, max_length=128),
        ),
    ]
