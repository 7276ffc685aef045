"""`webops check`: a monitoring plugin (Nagios, Icinga, Naemon, Sensu, NRPE) on Graphite's API."""
