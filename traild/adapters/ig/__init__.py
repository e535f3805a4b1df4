"""IG Markets: options (how a broker is set up), session (login, tokens), allowance (request
budgets and the amendment pacer), http (secrets, bodies), rest (the Broker port), markets
(dealing rules per epic), positions (the reads and what is kept per deal), trade (position
events from the TRADE stream plus reconciliation, through lanes), stream (the PRICE feed),
lightstreamer and lightstreamer_io (the account's one TLCP session), tlcp (the sans-IO
protocol), prices (PRICE items), wire (payloads <-> traild values) and check, check_amend
(``traild ig check``). Imports point one way: rest -> trade -> positions -> markets -> session."""
