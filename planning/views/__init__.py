"""Staff planning pages: one module per page."""
