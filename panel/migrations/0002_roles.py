"""The operators group: members run operations (viewers only look; staff administer)."""

from django.db import migrations


def create_operators(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name="operators")


class Migration(migrations.Migration):
    dependencies = [("panel", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_operators, migrations.RunPython.noop)]
