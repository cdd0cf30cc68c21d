"""Wire formats shared by the client and the server. No I/O here."""
