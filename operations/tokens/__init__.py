"""Staff API tokens: created, revoked and used by `services`, looked up by `selectors`."""
