"""`webops gate`: who gets a personalized response, decided inside Varnish per request."""
