from rest_framework import pagination
from rest_framework.exceptions import NotFound

from config.errors import ValidationError


class CursorPagination(pagination.CursorPagination):
    """Opaque cursors, newest first; stable under concurrent inserts."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        # DRF falls back to the default on a bad `page_size`; the caller asked for something else.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw.strip())
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError(
                f"page_size: an integer from 1 to {self.max_page_size}.",
                errors={
                    self.page_size_query_param: [f"An integer from 1 to {self.max_page_size}."]
                },
            )
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                    "default": self.page_size,
                }
            elif parameter["name"] == self.cursor_query_param:
                parameter["description"] = (
                    "Opaque cursor: the `cursor` of a `next` or `previous` link of an earlier page."
                )
        return parameters

    def decode_cursor(self, request):
        # DRF answers a garbled cursor with 404; it is a bad query parameter (400).
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                "Invalid cursor: use the `next` or `previous` link of a previous page.",
                errors={self.cursor_query_param: [str(self.invalid_cursor_message)]},
            ) from None
