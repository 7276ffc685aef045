"""`webops statsd`: a statsd-compatible metrics daemon (wire, config and console of Etsy's statsd)."""
