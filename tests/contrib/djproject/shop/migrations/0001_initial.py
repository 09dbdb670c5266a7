from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("item", models.CharField(max_length=100)),
                ("amount", models.IntegerField()),
                ("status", models.CharField(default="new", max_length=20)),
                ("charge", models.CharField(blank=True, default="", max_length=100)),
                ("flow_id", models.CharField(blank=True, default="", max_length=36)),
            ],
        ),
    ]
