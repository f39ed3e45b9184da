"""The analytics SQL view layer (operations/migrations/0004_analytics_views.py) and the
read-only role BI tools log in as (`manage.py analytics_role`). docs/analytics.md."""
