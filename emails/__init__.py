"""Email rendering (Jinja2 templates) and delivery over SMTP. Knows nothing of `recert`."""
