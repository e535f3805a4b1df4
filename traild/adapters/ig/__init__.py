"""IG Markets: session (login, tokens), rest (the Broker port), stream (PRICE/TRADE over
Lightstreamer), tlcp (the sans-IO protocol) and wire (REST payloads <-> traild values)."""
