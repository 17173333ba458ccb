from django.db import models


class Order(models.Model):
    email = models.CharField(max_length=320)
    total_cents = models.PositiveIntegerField()

    class Meta:
        db_table = "orders"
