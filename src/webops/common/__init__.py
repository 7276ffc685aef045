"""Code that more than one webops tool uses."""
