"""`webops cmdlog`: what a service user ran on a host (reference: nagios-command-logging.txt)."""
