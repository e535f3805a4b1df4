"""IG Markets: session (login, tokens, allowances), rest (the Broker port), trade (position
events from the TRADE stream plus reconciliation), stream (the PRICE feed), lightstreamer (the
TLCP client), tlcp (the sans-IO protocol), wire (payloads <-> traild values) and check
(``traild ig check``)."""
