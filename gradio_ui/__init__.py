"""The web page: New task chat, Dashboard and Questions tabs (mounted by serve_app.ingress)."""
