from credits.services import period_open


def on_subscription_period_opened(
    sender, *, subscription, previous_start=None, previous_end=None, **kwargs
) -> None:
    period_open(subscription=subscription, previous_start=previous_start, previous_end=previous_end)
