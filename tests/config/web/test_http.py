"""config.web.http: the client's address."""

from config.web.http import client_address


def test_client_address_trusts_forwarded_for_only_as_far_as_the_trusted_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.50", HTTP_X_FORWARDED_FOR="1.2.3.4, 10.0.0.99")

    settings.TRUSTED_PROXY_COUNT = 0
    assert client_address(request) == "10.0.0.50"  # a client's header is never believed
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "10.0.0.99"  # what our proxy saw
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request) == "1.2.3.4"
    settings.TRUSTED_PROXY_COUNT = 3  # fewer hops than proxies: not through them, the peer
    assert client_address(request) == "10.0.0.50"
