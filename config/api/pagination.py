from rest_framework import pagination
from rest_framework.exceptions import NotFound

from config.errors import ValidationError


class CursorPagination(pagination.CursorPagination):
    """Opaque cursors, newest first; stable under concurrent inserts."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request):
        # DRF answers a garbled cursor with 404; it is a bad query parameter (400).
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                "Invalid cursor: use the `next` or `previous` link of a previous page.",
                errors={self.cursor_query_param: [str(self.invalid_cursor_message)]},
            ) from None
