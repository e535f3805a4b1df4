"""IG Markets: session (login, tokens), allowance (request budgets), http (secrets, bodies),
rest (the Broker port), trade (position events from the TRADE stream plus reconciliation,
through lanes), stream (the PRICE feed), lightstreamer and lightstreamer_io (the account's one
TLCP session), tlcp (the sans-IO protocol), wire (payloads <-> traild values) and check,
check_amend (``traild ig check``)."""
