"""The API's JSON parser (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES), bounded and strict.

The body is read up to DATA_UPLOAD_MAX_MEMORY_SIZE (a larger one is a 413 `payload_too_large`)
and parsed with `config.strict_json.loads_strict`: a NUL, a lone surrogate or nesting deeper
than MAX_DEPTH is a 400 `validation_error` with a short reason, before any view runs.
"""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.parsers import JSONParser

from config.errors import PayloadTooLarge, ValidationError
from config.strict_json import HostileJSON, loads_strict


def read_limited(stream, limit: int | None) -> bytes:
    """The body, refusing one over `limit` bytes (PayloadTooLarge)."""
    if stream is None:
        return b""
    if limit is None:
        return stream.read()
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge()
    return data


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, bounded and strict."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        body = read_limited(stream, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        try:
            text = codecs.decode(body, encoding)
        except (UnicodeDecodeError, LookupError):
            raise ValidationError(f"Malformed request body: not {encoding}.") from None
        try:
            return loads_strict(text)
        except HostileJSON as exc:
            raise ValidationError(f"Malformed request body: {exc}") from None
