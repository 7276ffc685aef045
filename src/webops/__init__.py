"""webops: tools for the web-operations team, one command (`webops <tool>`)."""

__version__ = "0.1.0"
