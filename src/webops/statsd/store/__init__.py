"""The embedded history: every flush of every series on disk, with Graphite-style retentions and
rollups, for the Graphite API and the dashboard to read (issue 19)."""
