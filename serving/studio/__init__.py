"""The caps studio: a page on the API where product owners edit the policy, simulate a draft against
the live policy and apply or roll back through the API's own validated, versioned, audited updates."""
