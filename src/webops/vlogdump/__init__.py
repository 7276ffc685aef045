"""`webops vlogdump`: one readable line per Varnish transaction, from varnishlog's output."""
