from django.urls import path

from jobs import views

urlpatterns = [
    path("api/jobs/create", views.CreateJobView.as_view(), name="job-create"),
    path(
        "api/jobs/create-and-call",
        views.CreateAndCallView.as_view(),
        name="job-create-and-call",
    ),
    path(
        "api/jobs/create-and-call-stream",
        views.CreateAndCallStreamView.as_view(),
        name="job-create-and-call-stream",
    ),
    path("api/jobs/<str:job_id>", views.JobView.as_view(), name="job-detail"),
    path(
        "api/jobs/<str:job_id>/metadata",
        views.JobMetadataView.as_view(),
        name="job-metadata",
    ),
    path(
        "api/jobs/<str:job_id>/llm-call",
        views.LLMCallView.as_view(),
        name="job-llm-call",
    ),
    path(
        "api/jobs/<str:job_id>/llm-call-stream",
        views.LLMCallStreamView.as_view(),
        name="job-llm-call-stream",
    ),
    path(
        "api/jobs/<str:job_id>/complete",
        views.CompleteJobView.as_view(),
        name="job-complete",
    ),
    path("api/jobs/<str:job_id>/costs", views.JobCostsView.as_view(), name="job-costs"),
]
