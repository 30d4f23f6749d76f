from django.http import JsonResponse


async def health(request):
    """Report that the process is alive; checks no dependency."""
    return JsonResponse({"status": "healthy", "service": "saasllm"})
