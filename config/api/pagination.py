from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Opaque cursors, newest first; stable under concurrent inserts."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500
