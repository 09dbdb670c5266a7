from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    amount = models.IntegerField()
    status = models.CharField(max_length=20, default="new")
    charge = models.CharField(max_length=100, blank=True, default="")
    flow_id = models.CharField(max_length=36, blank=True, default="")
