from django.urls import include, path
from shop import views

urlpatterns = [
    path("orders/", views.place_order, name="place-order"),
    path("orders/<int:order_id>/", views.order_status, name="order-status"),
    path("flows/", include("celeryflow.contrib.django.urls")),
]
