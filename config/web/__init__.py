"""Web plumbing every app may import: view decorators, keyset paging and its cursors, request
helpers, form helpers and the number formats the templates show.

It imports no app (an import-linter contract keeps it so): it works on what the middleware
put on the request (`request.organization`) and on querysets it is given.
"""
