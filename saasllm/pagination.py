from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """``?limit=&offset=`` pages of ``{count, next, previous, results}``."""

    default_limit = 50
    max_limit = 200
