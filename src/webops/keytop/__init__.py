"""`webops keytop`: a live top of memcached keys (mctop / the tcpflow + pipestat one-liner)."""
