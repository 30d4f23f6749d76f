from django.urls import path, re_path

from jobs import openai_views

urlpatterns = [
    path(
        "v1/chat/completions",
        openai_views.ChatCompletionsView.as_view(),
        name="openai-chat-completions",
    ),
    path("v1/models", openai_views.ModelListView.as_view(), name="openai-models"),
    path(
        "v1/models/<path:model>",
        openai_views.ModelDetailView.as_view(),
        name="openai-model-detail",
    ),
    # Last, so that any other /v1 path gets a 404 in OpenAI's error shape.
    re_path(r"^v1/(?P<path>.*)$", openai_views.unknown_path, name="openai-unknown"),
]
